-- A namespace's items newest first: a search of one namespace reads about as many rows as its
-- page shows, however many items the namespace holds.
CREATE INDEX store_prefix_updated_at_idx ON store (prefix, updated_at DESC);
