//! Integration tests of gonka-kernels, one binary.

mod spec_vectors;
