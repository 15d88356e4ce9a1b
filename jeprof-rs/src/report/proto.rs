//! A minimal protocol-buffers writer (varints and length-delimited fields), enough for
//! profile.proto, plus a minimal reader used by tests to check what we wrote.

/// Appends protobuf fields to a byte buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

const VARINT: u8 = 0;
const LEN: u8 = 2;

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// A `uint64` field; zero is the default and is not written.
    pub fn uint64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// An `int64` field (two's complement varint); zero is not written.
    pub fn int64(&mut self, field: u32, v: i64) {
        self.uint64(field, v as u64);
    }

    pub fn bool(&mut self, field: u32, v: bool) {
        self.uint64(field, u64::from(v));
    }

    /// A `bytes`/`string` field, always written (an empty string-table entry must exist).
    pub fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, LEN);
        self.varint(data.len() as u64);
        self.buf.extend_from_slice(data);
    }

    /// An embedded message built by `build`.
    pub fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(field, &inner.buf);
    }

    /// A packed `repeated uint64`/`int64` field.
    pub fn packed(&mut self, field: u32, values: impl IntoIterator<Item = u64>) {
        let mut inner = Writer::default();
        for v in values {
            inner.varint(v);
        }
        if !inner.buf.is_empty() {
            self.bytes(field, &inner.buf);
        }
    }
}

/// A decoded field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
}

fn read_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// All `(field, value)` pairs of one message, or `None` if it is malformed.
pub fn decode(data: &[u8]) -> Option<Vec<(u32, Value<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let key = read_varint(data, &mut pos)?;
        let field = u32::try_from(key >> 3).ok()?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(data, &mut pos)?),
            1 => {
                let b: [u8; 8] = data.get(pos..pos + 8)?.try_into().ok()?;
                pos += 8;
                Value::Fixed64(u64::from_le_bytes(b))
            }
            2 => {
                let len = usize::try_from(read_varint(data, &mut pos)?).ok()?;
                let b = data.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Value::Bytes(b)
            }
            5 => {
                let b: [u8; 4] = data.get(pos..pos + 4)?.try_into().ok()?;
                pos += 4;
                Value::Fixed32(u32::from_le_bytes(b))
            }
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}

/// Decode a packed repeated varint field.
pub fn decode_packed(data: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        out.push(read_varint(data, &mut pos)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::default();
        w.uint64(1, 300);
        w.int64(2, -1);
        w.bytes(3, b"hi");
        w.message(4, |m| m.uint64(1, 7));
        w.packed(5, [1, 128, 3]);
        w.uint64(6, 0);
        assert_eq!(&w.buf[..3], &[0x08, 0xac, 0x02]);
        let fields = decode(&w.buf).unwrap();
        assert_eq!(fields[0], (1, Value::Varint(300)));
        assert_eq!(fields[1], (2, Value::Varint(u64::MAX)));
        assert_eq!(fields[2], (3, Value::Bytes(b"hi")));
        let Value::Bytes(inner) = fields[3].1 else {
            panic!()
        };
        assert_eq!(decode(inner).unwrap(), vec![(1, Value::Varint(7))]);
        let Value::Bytes(packed) = fields[4].1 else {
            panic!()
        };
        assert_eq!(decode_packed(packed).unwrap(), vec![1, 128, 3]);
        assert_eq!(fields.len(), 5);
        assert!(decode(&[0x08]).is_none());
    }
}
