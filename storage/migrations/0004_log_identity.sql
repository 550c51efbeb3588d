-- The identity of the log this database was built from (rule 9): the
-- broker cluster's ID and bursar.commands' topic ID. A node whose log has
-- another identity (another embedded broker's data directory, another
-- Kafka cluster, a recreated topic) must not apply it here: its offsets
-- mean other records.
CREATE TABLE log_identity (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    cluster_id  text NOT NULL,
    topic_id    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
