-- Notices: what Plaid says of an item that still works but will soon need its user in
-- Link's update mode (PENDING_EXPIRATION: consent ends within days; PENDING_DISCONNECT;
-- NEW_ACCOUNTS_AVAILABLE: accounts to share). They are kept apart from error_code, which
-- every sync sets or clears: a notice stays until the user has been through Link.
ALTER TABLE plaid_items ADD COLUMN notice_code text, ADD COLUMN notice_since timestamptz;

UPDATE plaid_items
   SET notice_code = error_code, notice_since = error_since,
       error_code = NULL, error_message = NULL, error_since = NULL
 WHERE error_code IN ('PENDING_EXPIRATION', 'PENDING_DISCONNECT');
