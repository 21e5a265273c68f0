//! Criterion benches across the Gonka crates (`cargo bench -p gonka-benches`),
//! and the PyTorch reference of the Sprint model that the bench script runs in
//! the same session (`benches/torch_pow.py`, `benches/run.sh`).
