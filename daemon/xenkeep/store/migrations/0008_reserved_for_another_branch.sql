-- Placeholder: schema number 8 belongs to another branch being merged with
-- this one. It keeps this branch's migrations in sequence on its own; the
-- lead deletes it at merge (two files numbered 8 stop the daemon at start,
-- so it cannot be forgotten).
SELECT 1;
