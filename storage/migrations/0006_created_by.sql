-- Who asked for each transaction (issue 12): the principal the ingress
-- took from the request's credential ("apikey:<key_id>"), carried in the
-- command record; a transfer's legs carry their debit's. Empty for rows
-- written before, or by a node without authentication. A constant default
-- adds the column without rewriting the table.
ALTER TABLE transactions ADD COLUMN created_by text NOT NULL DEFAULT '';
