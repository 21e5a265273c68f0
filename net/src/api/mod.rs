//! The HTTP API: OpenAI-compatible endpoints and chain queries over a backend the engine provides. (In progress.)
