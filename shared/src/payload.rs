//! The small game-defined payload an [`crate::Input`] may carry, held inline.
//!
//! Inputs are the hottest client message (one per client frame) and latest-wins on
//! the server, so their payload is kept small and allocation-free: up to
//! [`MAX_INPUT_PAYLOAD`] bytes in a fixed array, `Copy` like the rest of the input.
//! On the wire it is a byte string (a varint length, then the bytes), exactly as a
//! `Vec<u8>` would be, so other clients need no special case.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most bytes an input payload may hold.
pub const MAX_INPUT_PAYLOAD: usize = 32;

/// Up to [`MAX_INPUT_PAYLOAD`] bytes, inline. Empty by default.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InputPayload {
    len: u8,
    bytes: [u8; MAX_INPUT_PAYLOAD],
}

/// A payload longer than [`MAX_INPUT_PAYLOAD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input payload of {0} bytes exceeds {MAX_INPUT_PAYLOAD}")]
pub struct PayloadTooLong(pub usize);

impl InputPayload {
    /// A payload holding `bytes`.
    ///
    /// # Errors
    /// [`PayloadTooLong`] beyond [`MAX_INPUT_PAYLOAD`] bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, PayloadTooLong> {
        let mut payload = Self::default();
        let slot = payload
            .bytes
            .get_mut(..bytes.len())
            .ok_or(PayloadTooLong(bytes.len()))?;
        slot.copy_from_slice(bytes);
        // Fits: bytes.len() <= MAX_INPUT_PAYLOAD < 256.
        payload.len = bytes.len() as u8;
        Ok(payload)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for InputPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputPayload({:?})", self.as_bytes())
    }
}

impl Serialize for InputPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for InputPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = InputPayload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_INPUT_PAYLOAD} bytes")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<InputPayload, E> {
                InputPayload::new(v).map_err(|_| E::invalid_length(v.len(), &self))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<InputPayload, A::Error> {
                let mut payload = InputPayload::default();
                let mut len = 0usize;
                while let Some(b) = seq.next_element::<u8>()? {
                    let slot = payload
                        .bytes
                        .get_mut(len)
                        .ok_or_else(|| de::Error::invalid_length(len + 1, &self))?;
                    *slot = b;
                    len += 1;
                }
                payload.len = len as u8;
                Ok(payload)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode_to_vec};

    #[test]
    fn travels_as_a_byte_string() {
        let p = InputPayload::new(&[7, 8, 9]).unwrap();
        let bytes = encode_to_vec(&p).unwrap();
        assert_eq!(bytes, [3, 7, 8, 9]);
        assert_eq!(bytes, encode_to_vec(&vec![7u8, 8, 9]).unwrap());
        assert_eq!(decode::<InputPayload>(&bytes, 64).unwrap(), p);
        assert_eq!(encode_to_vec(&InputPayload::default()).unwrap(), [0]);
    }

    #[test]
    fn longer_than_the_limit_is_refused_both_ways() {
        assert_eq!(
            InputPayload::new(&[0; MAX_INPUT_PAYLOAD + 1]),
            Err(PayloadTooLong(MAX_INPUT_PAYLOAD + 1))
        );
        let full = InputPayload::new(&[1; MAX_INPUT_PAYLOAD]).unwrap();
        assert_eq!(full.as_bytes().len(), MAX_INPUT_PAYLOAD);
        let too_long = encode_to_vec(&vec![0u8; MAX_INPUT_PAYLOAD + 1]).unwrap();
        assert!(decode::<InputPayload>(&too_long, 1024).is_err());
    }
}
