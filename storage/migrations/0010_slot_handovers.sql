-- Slot migrations (issue 13): a row per group of a migration whose old
-- partition has committed every effect of the group's records up to its
-- barrier. It is written in the same transaction as the partition mark
-- that passes the barrier, so "handed over" means "PostgreSQL holds the
-- moved accounts' final state on the old partition": the new partition
-- may load them and apply. version is the slot map the migration moves
-- to; grp indexes ledger.Migration.Groups.
CREATE TABLE slot_handovers (
    version        bigint NOT NULL REFERENCES slot_maps (version),
    grp            int NOT NULL CHECK (grp >= 0),
    from_partition int NOT NULL,
    to_partition   int NOT NULL,
    slots          int NOT NULL,
    barrier_offset bigint NOT NULL,
    handed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, grp)
);
