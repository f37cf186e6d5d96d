//! End-to-end tests: the engine, the planner files and the `segstream` binary, in one
//! test binary (each binary linking DataFusion and RocksDB costs ~1 GB and seconds).

mod catalog_restart;
mod cli;
mod crash;
mod crash_twin;
mod fixtures;
mod getting_started;
mod grpc;
mod ingest;
mod malformed;
mod oracle;
mod plan_files;
mod restart;
mod state_over_time;
mod storage_fault;
mod support;
mod timer_passes;
mod workload;
