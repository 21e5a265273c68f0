//! The host's inference: the model it serves ([`model`]) and the server that
//! runs requests in continuous batches on the shared kernels, checks other
//! hosts' completions and lends idle capacity to the Sprint miner ([`server`]).

pub mod mining;
pub mod model;
pub mod payload;
pub mod server;

pub use model::{ModelError, ServedModel};
pub use server::{
    Event, FinishReason, GenerateRequest, Generated, IdleWork, Server, ServerConfig, ServerError,
};
