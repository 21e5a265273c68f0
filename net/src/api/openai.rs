//! The OpenAI wire format: request bodies as clients send them, their checks
//! into a [`CompletionJob`], and the response objects and stream chunks.
//!
//! Fields whose JSON type varies (`prompt`, `stop`, message `content`) are read
//! as [`serde_json::Value`] and checked here, so each bad shape gets an error
//! naming the field rather than serde's "did not match any variant". Unknown
//! fields are ignored, as OpenAI's own server does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::backend::{ChatMessage, CompletionJob, FinishReason, Prompt, Role, SamplingParams, Usage};
use super::error::ApiError;
use super::{ApiLimits, MAX_STOP_SEQUENCE_BYTES, MAX_STOP_SEQUENCES};

/// Body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model id.
    pub model: String,
    /// The conversation so far; at least one message.
    pub messages: Vec<ChatMessageIn>,
    /// Most tokens to generate (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Most tokens to generate (newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature in `0..=2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in `0..=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A stop sequence or an array of them.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub stop: Value,
    /// Number of choices; only 1 is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One message of a [`ChatCompletionRequest`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, an array of `{"type": "text", "text": ...}` parts, or null.
    #[serde(default)]
    pub content: Value,
}

/// Body of `POST /v1/completions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Model id.
    pub model: String,
    /// A string, or an array holding exactly one string.
    pub prompt: Value,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature in `0..=2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in `0..=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A stop sequence or an array of them.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub stop: Value,
    /// Number of choices; only 1 is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A checked completion request and how to answer it.
#[derive(Debug)]
pub(super) struct Checked {
    pub job: CompletionJob,
    pub include_usage: bool,
}

/// Knobs shared by both request kinds, before checking.
struct Knobs {
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    stop: Value,
    n: Option<u32>,
}

impl ChatCompletionRequest {
    /// Checks the request against `limits` and normalizes it.
    pub(super) fn check(self, limits: &ApiLimits) -> Result<Checked, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_param("messages", "`messages` must hold at least one message"));
        }
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| check_message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let knobs = Knobs {
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop,
            n: self.n,
        };
        let param = if self.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
        let params = knobs.check(limits, param)?;
        Ok(Checked {
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            job: CompletionJob {
                model: self.model,
                input: Prompt::Chat(messages),
                params,
                stream: self.stream.unwrap_or(false),
                user: self.user,
            },
        })
    }
}

impl CompletionRequest {
    /// Checks the request against `limits` and normalizes it.
    pub(super) fn check(self, limits: &ApiLimits) -> Result<Checked, ApiError> {
        let prompt = match self.prompt {
            Value::String(text) => text,
            Value::Array(items) => one_prompt(items)?,
            Value::Null => return Err(ApiError::bad_param("prompt", "missing field `prompt`")),
            other => {
                return Err(ApiError::bad_param(
                    "prompt",
                    format!("expected a string or an array of one string, found {}", json_kind(&other)),
                ));
            }
        };
        let knobs = Knobs {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop,
            n: self.n,
        };
        let params = knobs.check(limits, "max_tokens")?;
        Ok(Checked {
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            job: CompletionJob {
                model: self.model,
                input: Prompt::Text(prompt),
                params,
                stream: self.stream.unwrap_or(false),
                user: self.user,
            },
        })
    }
}

impl Knobs {
    fn check(self, limits: &ApiLimits, max_tokens_param: &str) -> Result<SamplingParams, ApiError> {
        if let Some(n) = self.max_tokens
            && !(1..=limits.max_tokens).contains(&n)
        {
            return Err(ApiError::bad_param(
                max_tokens_param,
                format!("`{max_tokens_param}` must be between 1 and {}, found {n}", limits.max_tokens),
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::bad_param("temperature", format!("expected 0 to 2, found {t}")));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ApiError::bad_param("top_p", format!("expected 0 to 1, found {p}")));
        }
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::bad_param("n", format!("only n = 1 is supported, found {n}")));
        }
        Ok(SamplingParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: check_stop(self.stop)?,
        })
    }
}

/// The prompt of an array `prompt`, which must hold exactly one string.
fn one_prompt(items: Vec<Value>) -> Result<String, ApiError> {
    let count = items.len();
    let kind = items.first().map_or("an empty array", |first| match first {
        Value::Number(_) => "an array of numbers (token ids)",
        _ => "an array of something other than strings",
    });
    match items.into_iter().next() {
        Some(Value::String(text)) if count == 1 => Ok(text),
        Some(Value::String(_)) => Err(ApiError::bad_param(
            "prompt",
            format!("expected one prompt, found an array of {count}; send one request per prompt"),
        )),
        _ => Err(ApiError::bad_param(
            "prompt",
            format!("expected a string or an array of one string, found {kind}"),
        )),
    }
}

fn check_message(index: usize, message: ChatMessageIn) -> Result<ChatMessage, ApiError> {
    let role = Role::parse(&message.role).ok_or_else(|| {
        ApiError::bad_param(
            format!("messages[{index}].role"),
            format!(
                "expected one of system, developer, user, assistant, tool; found `{}`",
                truncate(&message.role, 32)
            ),
        )
    })?;
    let param = || format!("messages[{index}].content");
    let content = match message.content {
        Value::String(text) => text,
        // An assistant turn that only called tools has no content.
        Value::Null => String::new(),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::bad_param(
                            format!("{}[{j}]", param()),
                            format!(
                                "only text parts (`{{\"type\": \"text\", \"text\": ...}}`) are supported, found type {}",
                                kind.map_or_else(|| "none".to_owned(), |k| format!("`{}`", truncate(k, 32)))
                            ),
                        ));
                    }
                }
            }
            text
        }
        other => {
            return Err(ApiError::bad_param(
                param(),
                format!("expected a string or an array of text parts, found {}", json_kind(&other)),
            ));
        }
    };
    Ok(ChatMessage { role, content })
}

fn check_stop(stop: Value) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(ApiError::bad_param(
                    "stop",
                    format!("expected an array of strings, found an element that is {}", json_kind(&other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ApiError::bad_param(
                "stop",
                format!("expected a string or an array of strings, found {}", json_kind(&other)),
            ));
        }
    };
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::bad_param(
            "stop",
            format!("at most {MAX_STOP_SEQUENCES} stop sequences are allowed, found {}", stops.len()),
        ));
    }
    if let Some(long) = stops.iter().find(|s| s.len() > MAX_STOP_SEQUENCE_BYTES || s.is_empty()) {
        return Err(ApiError::bad_param(
            "stop",
            format!("each stop sequence must be 1 to {MAX_STOP_SEQUENCE_BYTES} bytes, found {}", long.len()),
        ));
    }
    Ok(stops)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, for echoing client input in errors.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageObject {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl From<Usage> for UsageObject {
    fn from(u: Usage) -> Self {
        UsageObject {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
        }
    }
}

/// A `chat.completion` object: the answer to a non-streaming chat request.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionResponse<'a> {
    /// Response id, from the backend.
    pub id: &'a str,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: &'a str,
    /// The one choice.
    pub choices: [ChatChoice<'a>; 1],
    /// Token counts.
    pub usage: UsageObject,
}

/// A choice of a [`ChatCompletionResponse`].
#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage<'a>,
    /// Not supported; always null.
    pub logprobs: Option<()>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
}

/// The generated message of a [`ChatChoice`].
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage<'a> {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text.
    pub content: &'a str,
}

/// A `text_completion` object: the answer to a non-streaming completion request.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionResponse<'a> {
    /// Response id, from the backend.
    pub id: &'a str,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Model id.
    pub model: &'a str,
    /// The one choice.
    pub choices: [TextChoice<'a>; 1],
    /// Token counts; absent on stream chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageObject>,
}

/// A choice of a [`CompletionResponse`] or of a completion stream chunk.
#[derive(Debug, Clone, Serialize)]
pub struct TextChoice<'a> {
    /// The generated text (or this chunk of it).
    pub text: &'a str,
    /// Always 0.
    pub index: u32,
    /// Not supported; always null.
    pub logprobs: Option<()>,
    /// Why generation stopped; null on all but the last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// A `chat.completion.chunk`: one server-sent event of a streaming chat answer.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk<'a> {
    /// Response id, the same on every chunk.
    pub id: &'a str,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds, the same on every chunk.
    pub created: u64,
    /// Model id.
    pub model: &'a str,
    /// One choice, or none on the final usage chunk.
    pub choices: &'a [ChunkChoice<'a>],
    /// Token counts, on the final usage chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageObject>,
}

/// A choice of a [`ChatCompletionChunk`].
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta<'a>,
    /// Not supported; always null.
    pub logprobs: Option<()>,
    /// Why generation stopped; null on all but the last chunk with a choice.
    pub finish_reason: Option<FinishReason>,
}

/// The `delta` of a [`ChunkChoice`]: `{"role": "assistant", "content": ""}`
/// first, then `{"content": "..."}`, then `{}` with the finish reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta<'a> {
    /// `assistant` on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// The new text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelObject<'a> {
    /// Model id.
    pub id: &'a str,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Owner.
    pub owned_by: &'a str,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList<'a> {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<ModelObject<'a>>,
}
