//! Talking to Ollama: one chat call, streamed, with the answer settings finq asks for.
//!
//! The request is ollama-rs's [`ChatMessageRequest`]; the reply is read here as Ollama's
//! NDJSON stream (one JSON object per line) so that progress can be shown token by token.
//! The bytes are split on newlines before they are decoded: a character cut in two by the
//! network is joined again, never dropped.

use std::time::{Duration, Instant};

use finq_core::config::AnswerSettings;
use ollama_rs::Ollama;
use ollama_rs::error::OllamaError;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::chat::{ChatMessage, ChatMessageResponse};
use ollama_rs::generation::parameters::FormatType;
use ollama_rs::models::ModelOptions;
use tokio::sync::OnceCell;

use super::NlError;

/// What a caller hears while the model writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    /// Pieces (about one token each) received so far.
    pub tokens: u64,
    pub elapsed: Duration,
}

/// A reply, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub content: String,
    /// Tokens of the reply and of the prompt, as Ollama counted them.
    pub tokens: u64,
    pub prompt_tokens: u64,
    pub elapsed: Duration,
}

/// Tokens kept free for the reply when sizing the window.
const REPLY_TOKENS: u32 = 1024;

/// Characters a token takes, roughly (about 3.5 in English and SQL): on the low side, so
/// token counts come out high and windows are not too small.
pub const CHARS_PER_TOKEN: f64 = 3.2;

/// A rough count of a prompt's tokens.
pub fn estimate_tokens(chars: usize) -> u32 {
    (chars as f64 / CHARS_PER_TOKEN).ceil() as u32
}

pub struct OllamaChat {
    ollama: Ollama,
    http: reqwest::Client,
    host: String,
    model: String,
    settings: AnswerSettings,
    /// The model is checked once per process.
    checked: OnceCell<()>,
}

impl OllamaChat {
    pub fn new(host: &str, model: &str, settings: AnswerSettings) -> Result<Self, NlError> {
        let ollama = Ollama::try_new(host).map_err(|e| NlError::Unreachable {
            host: host.to_string(),
            detail: format!("not a valid URL ({e})"),
        })?;
        Ok(OllamaChat {
            ollama,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| NlError::Ollama(e.to_string()))?,
            host: host.trim_end_matches('/').to_string(),
            model: model.to_string(),
            settings,
            checked: OnceCell::new(),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn map_err(&self, e: OllamaError) -> NlError {
        match e {
            OllamaError::ReqwestError(r) => self.reqwest_err(r),
            other => NlError::Ollama(other.to_string()),
        }
    }

    fn model_missing(&self, available: String) -> NlError {
        NlError::ModelMissing {
            model: self.model.clone(),
            host: self.host.clone(),
            available,
        }
    }

    fn reqwest_err(&self, r: reqwest::Error) -> NlError {
        if r.is_connect() || r.is_request() {
            NlError::Unreachable {
                host: self.host.clone(),
                detail: r.to_string(),
            }
        } else {
            NlError::Ollama(r.to_string())
        }
    }

    /// Ollama is up and has the model (asked once per process).
    pub async fn check(&self) -> Result<(), NlError> {
        self.checked
            .get_or_try_init(|| async {
                let models = self
                    .ollama
                    .list_local_models()
                    .await
                    .map_err(|e| self.map_err(e))?;
                let wanted = if self.model.contains(':') {
                    self.model.clone()
                } else {
                    format!("{}:latest", self.model)
                };
                if models
                    .iter()
                    .any(|m| m.name == self.model || m.name == wanted)
                {
                    return Ok(());
                }
                let available: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                Err(self.model_missing(if available.is_empty() {
                    "(none pulled yet)".to_string()
                } else {
                    available.join(", ")
                }))
            })
            .await
            .map(|_| ())
    }

    /// One chat call, streamed; `progress` hears of every piece.
    pub async fn chat(
        &self,
        messages: Vec<ChatMessage>,
        format: Option<FormatType>,
        progress: &mut (dyn FnMut(Streamed) + Send),
    ) -> Result<Reply, NlError> {
        self.check().await?;
        let prompt_chars: usize = messages.iter().map(|m| m.content.len()).sum();
        let window = (estimate_tokens(prompt_chars) + REPLY_TOKENS)
            .div_ceil(1024)
            .saturating_mul(1024)
            .clamp(2048, self.settings.max_context.max(2048));
        let mut request = ChatMessageRequest::new(self.model.clone(), messages).options(
            ModelOptions::default()
                .temperature(self.settings.temperature)
                .seed(self.settings.seed)
                .num_ctx(u64::from(window)),
        );
        if let Some(format) = format {
            request = request.format(format);
        }
        let mut body =
            serde_json::to_value(&request).map_err(|e| NlError::Ollama(e.to_string()))?;
        body["stream"] = serde_json::Value::Bool(true);
        let started = Instant::now();
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.stream(body, started, progress)).await {
            Ok(reply) => reply,
            Err(_) => Err(NlError::Timeout {
                model: self.model.clone(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    async fn stream(
        &self,
        body: serde_json::Value,
        started: Instant,
        progress: &mut (dyn FnMut(Streamed) + Send),
    ) -> Result<Reply, NlError> {
        let mut response = self
            .http
            .post(format!("{}/api/chat", self.host))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.reqwest_err(e))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(if message.contains("not found") {
                self.model_missing("(see `ollama list`)".to_string())
            } else {
                NlError::Ollama(format!("{status}: {message}"))
            });
        }
        let mut pending: Vec<u8> = Vec::new();
        let mut content = String::new();
        let mut pieces = 0u64;
        let mut done: Option<ChatMessageResponse> = None;
        loop {
            let chunk = response.chunk().await.map_err(|e| self.reqwest_err(e))?;
            let ended = chunk.is_none();
            if let Some(chunk) = chunk {
                pending.extend_from_slice(&chunk);
            } else if !pending.is_empty() {
                pending.push(b'\n');
            }
            while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                    NlError::Ollama(format!("Ollama sent a line that is not JSON ({e})"))
                })?;
                if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
                    return Err(NlError::Ollama(error.to_string()));
                }
                let piece: ChatMessageResponse = serde_json::from_value(value).map_err(|e| {
                    NlError::Ollama(format!("Ollama sent an unexpected reply ({e})"))
                })?;
                content.push_str(&piece.message.content);
                if piece.done {
                    done = Some(piece);
                } else {
                    pieces += 1;
                    progress(Streamed {
                        tokens: pieces,
                        elapsed: started.elapsed(),
                    });
                }
            }
            if ended {
                break;
            }
        }
        let Some(done) = done else {
            return Err(NlError::Ollama(
                "Ollama's reply ended before it said it was done".into(),
            ));
        };
        let (tokens, prompt_tokens) = done
            .final_data
            .map(|d| (d.eval_count, d.prompt_eval_count))
            .unwrap_or((pieces, 0));
        Ok(Reply {
            content,
            tokens,
            prompt_tokens,
            elapsed: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_errs_high() {
        assert!(estimate_tokens(3500) >= 1000);
        assert_eq!(estimate_tokens(0), 0);
    }
}
