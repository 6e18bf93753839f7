//! Server-sent events split from an upstream's bytes: the one decoder every adapter uses. It
//! reads each byte once (a line is looked for only in what arrived since the last look), and
//! an event larger than its bound is an invalid response rather than memory without end.

use bytes::{Bytes, BytesMut};

use crate::error::ProviderError;

/// The largest event accepted: room for a long tool call's arguments or an image in base64.
pub(crate) const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// One event: its bytes as they came (to forward untouched), and its `data`.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub raw: Bytes,
    /// The `data:` lines joined by `\n`, the optional space after each colon dropped. `None`
    /// for an event without data (a comment, a keep-alive). Other fields (`event:`, `id:`)
    /// ride along in `raw`: the adapters read what the data says.
    pub data: Option<Bytes>,
}

impl Event {
    /// Whether the data is OpenAI's end marker.
    pub fn is_done(&self) -> bool {
        self.data.as_deref().map(<[u8]>::trim_ascii) == Some(b"[DONE]")
    }

    fn parse(raw: Bytes) -> Self {
        let mut data: Option<BytesMut> = None;
        let mut single: Option<Bytes> = None;
        let mut offset = 0;
        for line in raw.split_inclusive(|b| *b == b'\n') {
            let start = offset;
            offset += line.len();
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let field = |prefix: &[u8]| -> Option<(usize, usize)> {
                let rest = text.strip_prefix(prefix)?;
                let skip = usize::from(rest.first() == Some(&b' '));
                let begin = start + prefix.len() + skip;
                Some((begin, start + text.len()))
            };
            if let Some((begin, end)) = field(b"data:") {
                let piece = raw.slice(begin..end);
                match (&mut data, single.take()) {
                    (None, None) => single = Some(piece),
                    (None, Some(first)) => {
                        let mut joined = BytesMut::from(&first[..]);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&piece);
                        data = Some(joined);
                    }
                    (Some(joined), _) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&piece);
                    }
                }
            }
        }
        Self {
            data: data.map(BytesMut::freeze).or(single),
            raw,
        }
    }
}

/// Splits a stream of bytes into whole events.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buffer: BytesMut,
    /// Where the line being read began, and how far the buffer was searched for its end.
    line_start: usize,
    scanned: usize,
}

impl Decoder {
    /// The whole events completed by `bytes`, as one run of bytes (`batch`, to forward at
    /// once) and each event within it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<(Bytes, Vec<Event>)>, ProviderError> {
        self.buffer.extend_from_slice(bytes);
        let mut ends = Vec::new();
        while let Some(at) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
            let newline = self.scanned + at;
            let line = &self.buffer[self.line_start..newline];
            let blank = line.is_empty() || line == b"\r";
            self.scanned = newline + 1;
            self.line_start = newline + 1;
            if blank {
                ends.push(newline + 1);
            }
        }
        // Searched to the end: the next push looks only at what it adds.
        self.scanned = self.buffer.len();
        if self.buffer.len() - ends.last().copied().unwrap_or(0) > MAX_EVENT_BYTES {
            return Err(ProviderError::InvalidResponse);
        }
        let Some(&end) = ends.last() else {
            return Ok(None);
        };
        let batch = self.buffer.split_to(end).freeze();
        self.line_start -= end;
        self.scanned -= end;
        let mut events = Vec::with_capacity(ends.len());
        let mut from = 0;
        for to in ends {
            events.push(Event::parse(batch.slice(from..to)));
            from = to;
        }
        Ok(Some((batch, events)))
    }

    /// Bytes left without the blank line that would end their event.
    pub fn leftover(&self) -> bool {
        self.buffer.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// The data of each event in whole events: for a caller of the adapters that reads the
/// chunks it forwards (the gateway counts what a stream holds).
#[derive(Debug, Default)]
pub struct EventSplitter(Decoder);

impl EventSplitter {
    /// The `data` of every event completed by `bytes` (an event past the bound yields none).
    pub fn data_of(&mut self, bytes: &[u8]) -> Vec<Bytes> {
        match self.0.push(bytes) {
            Ok(Some((_, events))) => events.into_iter().filter_map(|e| e.data).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut Decoder, input: &[u8], piece: usize) -> Vec<Event> {
        input
            .chunks(piece)
            .flat_map(|c| decoder.push(c).unwrap().map(|(_, e)| e).unwrap_or_default())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole_with_their_data() {
        let input = b"event: message_start\r\ndata: {\"a\": 1}\r\n\r\n: keep-alive\n\ndata:{\"b\":2}\ndata: x\n\ndata: [DONE]\n\n";
        for piece in [1, 3, 7, input.len()] {
            let mut decoder = Decoder::default();
            let events = all(&mut decoder, input, piece);
            assert_eq!(events.len(), 4, "piece {piece}");
            assert_eq!(events[0].data.as_deref(), Some(&b"{\"a\": 1}"[..]));
            assert_eq!(events[1].data, None);
            assert_eq!(events[2].data.as_deref(), Some(&b"{\"b\":2}\nx"[..]));
            assert!(events[3].is_done());
            let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
            assert_eq!(raw, input, "forwarded untouched");
            assert!(!decoder.leftover());
        }
    }

    #[test]
    fn av_4_an_event_without_end_is_bounded() {
        let mut decoder = Decoder::default();
        let line = vec![b'a'; 1024 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_EVENT_BYTES / line.len() + 2) {
            if decoder.push(&line).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless event was buffered without bound");
    }
}
