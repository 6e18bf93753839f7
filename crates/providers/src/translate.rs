//! A client's wire format other than OpenAI's Chat Completions, spoken over the chain's chat
//! streams: each such format (Anthropic's Messages, OpenAI's Responses) turns the upstream's
//! chat chunks into its own events, one piece at a time.

use bytes::Bytes;
use portcullis_core::money::Usage;

use crate::error::ProviderError;
use crate::sse::Decoder;

/// The data of each event that `chunk` completes, as text, trimmed: what every translation
/// reads of an upstream chat stream (an event whose data is not UTF-8 carries nothing).
pub(crate) fn event_data(
    decoder: &mut Decoder,
    chunk: &[u8],
) -> Result<Vec<String>, ProviderError> {
    let Some(batch) = decoder.push(chunk)? else {
        return Ok(Vec::new());
    };
    Ok(batch
        .events()
        .filter_map(|event| {
            let data = event.data?;
            std::str::from_utf8(&data).ok().map(|d| d.trim().to_owned())
        })
        .collect())
}

/// Turns an OpenAI chat stream into a client's event stream. Upstream pieces may split events
/// anywhere; implementations reassemble them with the shared decoder.
pub trait StreamTranslation: Send {
    /// The client's events for the next piece of the upstream stream; an event past the
    /// decoder's bound ends the stream.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, ProviderError>;

    /// What the upstream reported the answer used, for the closing event.
    fn usage(&mut self, usage: &Usage);

    /// The closing events (once; nothing after the first call).
    fn finish(&mut self) -> Vec<Bytes>;

    /// The event that ends a stream the upstream broke.
    fn error_event(&self) -> Bytes;
}
