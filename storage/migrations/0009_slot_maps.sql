-- The slot map (issue 13): how the fixed slots accounts hash to map to
-- the partitions of bursar.commands. Each version is a row; the highest
-- is the routing authority. encoding is ledger.SlotMap.AppendBinary (the
-- version and partition count again, then every slot's partition; none
-- for version 0, the identity modulo the count). Rows are never updated.
CREATE TABLE slot_maps (
    version    bigint PRIMARY KEY CHECK (version >= 0),
    partitions int NOT NULL CHECK (partitions > 0),
    encoding   bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
