#![no_std]
// This file exists to enable the library target (aya-build's convention); the
// programs live in the `profiler` binary target (src/main.rs).
