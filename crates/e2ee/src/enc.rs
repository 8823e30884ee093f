//! Binary encoding: big-endian fixed-width integers and `lp(x) = u16(len(x)) || x`.
//! Everything signed, hashed or used as AAD is built with these; never JSON.

/// Appends big-endian integers and length-prefixed byte strings.
#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Starts with a label (e.g. `b"confer/1 roster"`).
    pub fn label(label: &[u8]) -> Self {
        Self(label.to_vec())
    }

    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    /// `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// `u16` big-endian.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `u64` big-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `lp(x)`: panics only if `x` is over 65,535 bytes, which no caller allows (ids are 16
    /// bytes, session ids at most 64, names are bounded by the caller).
    pub fn lp(&mut self, x: &[u8]) -> &mut Self {
        let len = u16::try_from(x.len()).expect("lp() input over 65535 bytes");
        self.u16(len).raw(x)
    }

    /// The bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

/// The input ended early or had the wrong shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<'a> Reader<'a> {
    /// Over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.buf.len() < n {
            return Err(Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Expects these exact bytes.
    pub fn expect(&mut self, label: &[u8]) -> Result<(), Truncated> {
        if self.take(label.len())? == label {
            Ok(())
        } else {
            Err(Truncated)
        }
    }

    /// `u8`.
    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    /// `u16`.
    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// `u64`.
    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `lp(x)`.
    pub fn lp(&mut self) -> Result<&'a [u8], Truncated> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}
