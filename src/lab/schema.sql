-- Schema of the lab's task tracker. Idempotent: run on every start. The advisory lock keeps
-- several lab instances that start together from racing on CREATE TABLE IF NOT EXISTS.
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('gameday-lab-schema'));

CREATE TABLE IF NOT EXISTS tasks (
    id           uuid PRIMARY KEY,
    title        text NOT NULL,
    created_at   timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    notified_at  timestamptz
);

-- Tasks accepted while the broker was unreachable; the drainer republishes them.
CREATE TABLE IF NOT EXISTS retry_queue (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    retry_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS retry_queue_retry_at ON retry_queue (retry_at);
COMMIT;
