//! dmaprof's agent: drives file <-> dma-buf workloads and traces them with eBPF.
pub mod btf;
pub mod capabilities;
pub mod compare;
pub mod dma_buf;
pub mod doctor;
pub mod export;
pub mod fsinfo;
pub mod kernel;
pub mod live;
pub mod mapping;
pub mod probes;
pub mod tracefs;
pub mod workload;
