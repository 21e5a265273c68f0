//! Integration tests of gonka-kernels, one binary.

mod smollm2;
mod spec_vectors;
mod spec_vectors_v2;
