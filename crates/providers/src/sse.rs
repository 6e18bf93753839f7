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

/// Whether `json` may hold a `usage` object: a `"usage"` key followed, past any whitespace, by
/// a colon and an opening brace. A cheap look before a parse, so that the `"usage": null` of
/// every chunk of an OpenAI stream is not parsed; the parse decides. A key spelled with escapes
/// goes unseen, and its request then settles at its reservation (never below it).
pub(crate) fn may_carry_usage(json: &[u8]) -> bool {
    let skip = |bytes: &[u8], mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    memchr::memmem::find_iter(json, b"\"usage\"").any(|at| {
        let colon = skip(json, at + 7);
        json.get(colon) == Some(&b':') && json.get(skip(json, colon + 1)) == Some(&b'{')
    })
}

/// Whether a run of events may hold OpenAI's end marker.
pub(crate) fn may_be_done(events: &[u8]) -> bool {
    memchr::memmem::find(events, b"[DONE]").is_some()
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

/// Whole events that arrived together.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub bytes: Bytes,
    /// Where each event ends in `bytes`.
    ends: Vec<usize>,
}

impl Batch {
    /// Each event, read now.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(from, to)| Event::parse(self.bytes.slice(from..to)))
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
    /// The whole events completed by `bytes`, as one run of bytes to forward at once, whose
    /// events are read only if asked for.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Batch>, ProviderError> {
        self.buffer.extend_from_slice(bytes);
        let mut ends = Vec::new();
        while let Some(at) = memchr::memchr(b'\n', &self.buffer[self.scanned..]) {
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
        let bytes = self.buffer.split_to(end).freeze();
        self.line_start -= end;
        self.scanned -= end;
        Ok(Some(Batch { bytes, ends }))
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
            Ok(Some(batch)) => batch.events().filter_map(|e| e.data).collect(),
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
            .flat_map(|c| {
                decoder
                    .push(c)
                    .unwrap()
                    .map(|b| b.events().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
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
    fn av_2_a_usage_object_is_noticed_whatever_the_spacing_and_null_is_not() {
        assert!(may_carry_usage(
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(may_carry_usage(
            b"{ \"usage\" \n :\t { \"total_tokens\": 1 } }"
        ));
        assert!(!may_carry_usage(
            br#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        assert!(!may_carry_usage(
            br#"{"choices":[{"delta":{"content":"usage"}}]}"#
        ));
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
