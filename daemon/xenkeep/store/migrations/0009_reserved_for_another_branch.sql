-- Placeholder: schema number 9 belongs to another branch being merged with
-- this one. It keeps this branch's migrations in sequence on its own; the
-- lead deletes it at merge (two files numbered 9 stop the daemon at start,
-- so it cannot be forgotten).
SELECT 1;
