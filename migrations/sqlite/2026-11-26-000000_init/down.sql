DROP TABLE store;
DROP TABLE checkpoint_writes;
DROP TABLE checkpoint_blobs;
DROP TABLE checkpoints;
DROP TABLE threads;
