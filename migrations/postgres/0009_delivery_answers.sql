-- What a notification server said in its own words (the start of its body, its SMTP reply)
-- is kept apart from the error everyone sees: only administrators are shown it, so a channel
-- URL pointed at an internal address cannot be used to read that address.
ALTER TABLE deliveries ADD COLUMN last_answer TEXT NOT NULL DEFAULT '';

-- Errors recorded before quoted the server: move them out of sight of non-administrators.
UPDATE deliveries SET last_answer = last_error,
    last_error = 'the server answered with an error (its words are shown to administrators)'
    WHERE last_error LIKE '%answered%';
