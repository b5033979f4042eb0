//! dmaprof's agent: drives file <-> dma-buf workloads and traces them with
//! eBPF. Data moves one way: `workload::plan` -> `probes` -> `workload` ->
//! `metrics` (summaries) -> `export` / `live` (outputs and the dashboard);
//! `commands` wires them together, one module per command.
pub mod btf;
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod dma_buf;
pub mod doctor;
pub mod exit;
pub mod export;
pub mod fsinfo;
pub mod kernel;
pub mod live;
pub mod mapping;
pub mod mechanism;
pub mod metrics;
pub mod probes;
pub mod profile;
pub mod report;
pub mod stop;
pub mod tracefs;
pub mod workload;
