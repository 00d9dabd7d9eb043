-- Conversations with finq: each answer keeps what it was computed from and how it fared,
-- so a follow-up can be answered from the earlier turns and a person can see later why an
-- answer said what it said.
ALTER TABLE chat_conversations ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE chat_messages
    ADD COLUMN row_summary   text,
    ADD COLUMN verification  text CHECK (verification IN ('verified', 'unverified', 'no_answer')),
    ADD COLUMN numbers       jsonb,
    ADD COLUMN model         text,
    ADD COLUMN attempts      integer,
    ADD COLUMN timings       jsonb;

CREATE INDEX chat_messages_conversation_idx ON chat_messages (conversation_id, id);
