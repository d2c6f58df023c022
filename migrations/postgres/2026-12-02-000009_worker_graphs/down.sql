DROP TABLE worker_graphs;
