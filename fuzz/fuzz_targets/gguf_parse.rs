//! Property: `Gguf::parse` on any bytes returns `Ok` or `Err` and never
//! panics; on `Ok`, every tensor's view is exactly its size and lies inside
//! the parsed buffer, and dequantizing any row of any tensor works, or errors
//! only because its type has no dequantizer.
#![no_main]

use gonka_kernels::llm::gguf::Gguf;
use gonka_kernels::llm::quant::{QuantError, dequantize_row};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::parse(data.to_vec()) else { return };
    let file = gguf.as_bytes().as_ptr_range();
    for info in gguf.tensors() {
        let view = gguf.tensor(&info.name).expect("a listed tensor has a view");
        assert_eq!(view.data.len(), info.n_bytes(), "{} view size", info.name);
        let span = view.data.as_ptr_range();
        assert!(file.start <= span.start && span.end <= file.end, "{} view outside the file", info.name);
        // The data lies inside the input, so this buffer is no larger than 32 values per input byte.
        let mut row = vec![0.0f32; info.row_len()];
        for r in 0..info.n_rows() {
            let bytes = view.row(r).expect("a row below n_rows exists");
            match dequantize_row(info.dtype, bytes, &mut row) {
                Ok(()) | Err(QuantError::Unsupported { .. }) => {}
                Err(e) => panic!("{} row {r} of a parsed file: {e}", info.name),
            }
        }
        assert!(view.row(info.n_rows()).is_none(), "{} has a row past its last", info.name);
    }
});
