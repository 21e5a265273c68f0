//! Integration tests of gonka-kernels, one binary.

mod spec_vectors;
mod spec_vectors_v2;
mod smollm2;
