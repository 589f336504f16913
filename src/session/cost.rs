//! What a decoded session costs in memory, estimated from its DER alone.
//!
//! A cache that keeps `SSL_SESSION` objects must count what they hold, not only the DER
//! they came from. `d2i_SSL_SESSION` allocates about 1 KiB for a session without a peer
//! certificate, but a client certificate becomes a tree of ASN.1 objects whose size follows
//! its *structure* more than its length, and the client chooses that structure. Heap bytes
//! held by one decoded server session (OpenSSL 3.0, glibc, malloc overhead included;
//! "+caches" after the application asked OpenSSL about the certificate, e.g.
//! `X509_check_purpose`, which decodes and keeps some extensions):
//!
//! | peer certificate                        | DER bytes | elements | heap bytes | per element |
//! |-----------------------------------------|----------:|---------:|-----------:|------------:|
//! | none                                    |       132 |        — |      1,017 |           — |
//! | P-256, no extensions                    |       412 |       32 |      5,109 |             |
//! | RSA-8192                                |     1,384 |       35 |      6,623 |             |
//! | one 7,000-byte extension                |     7,440 |      113 |     19,395 |             |
//! | 600 one-letter CN RDNs                  |     7,598 |    2,428 |     92,330 |          38 |
//! | 600 RDNs of unknown OIDs                |     6,970 |    2,428 |    140,964 |          58 |
//! | 1,500 one-letter DNS names, +caches     |     4,933 |    1,538 |    171,412 |         111 |
//! | 1,000 CRL distribution points, +caches  |     9,433 |    4,038 |    304,038 |          75 |
//!
//! So bytes alone bound nothing: 35 heap bytes per DER byte is within a client's reach,
//! while an ordinary certificate costs 5 to 12. The estimate therefore counts elements
//! (TLVs), including those inside OCTET STRINGs and BIT STRINGs that hold DER themselves
//! (extension values, keys), since OpenSSL decodes those too, eagerly or when asked:
//!
//! cost = [`BASE`] + [`PER_BYTE`] × DER bytes
//!        + for each structured field (the peer certificate):
//!          [`STRUCTURED_BASE`] + [`PER_ELEMENT`] × its elements
//!
//! It is an upper bound with margin on every case above (the tightest: a session without a
//! peer and the DNS names, by 1.5× and 1.6×; ordinary certificates by 2.3 to 3×), and
//! `tests::formula_bounds_what_openssl_allocates` measures it again on this machine's
//! OpenSSL, so an OpenSSL that allocates more fails the build's tests. Bytes that do not
//! parse as DER where DER is expected, and BER's indefinite lengths anywhere, count as one
//! element per two bytes, the most any encoding can hold, so a malformed or BER-encoded
//! certificate costs more, never less; opaque string contents (hashes, signatures, filler)
//! count nothing.
//!
//! The walk is linear in the DER's length, uses no recursion (a session's DER comes from
//! the client's certificate) and never panics.

use std::ops::Range;

/// Every decoded session: the `SSL_SESSION` structure, its lock, its buffers.
pub(crate) const BASE: usize = 1024;
/// Per DER byte: OpenSSL copies strings and keeps encodings (of names, of the certificate).
pub(crate) const PER_BYTE: usize = 4;
/// Per structured field (the peer certificate): the `X509` and `EVP_PKEY` objects.
pub(crate) const STRUCTURED_BASE: usize = 4096;
/// Per element of a structured field: an ASN.1 object, its allocations and the stack slot
/// that holds it (measured at most 111).
pub(crate) const PER_ELEMENT: usize = 160;

/// Upper bound of the heap memory `d2i_SSL_SESSION(der)` returns, and that the object may
/// come to hold when an application reads its peer certificate.
pub fn object_cost(der: &[u8]) -> usize {
    let mut cost = BASE.saturating_add(PER_BYTE.saturating_mul(der.len()));
    let structured =
        |elements: usize| STRUCTURED_BASE.saturating_add(PER_ELEMENT.saturating_mul(elements));
    let outer = match read(der, 0, der.len()) {
        Ok(t) if t.constructed => t,
        // Not a session we can read: charge it as if all of it were one certificate.
        _ => return cost.saturating_add(structured(der.len() / 2)),
    };
    let mut at = outer.content.start;
    while at < outer.content.end {
        match read(der, at, outer.content.end) {
            Ok(field) => {
                // Explicitly tagged primitives ([4] { OCTET STRING }) are copied as bytes;
                // a field holding a structure ([3] { Certificate }) is decoded into objects.
                if field.constructed && holds_structure(der, field.content.clone()) {
                    cost = cost.saturating_add(structured(elements(der, at..field.end)));
                }
                at = field.end;
            }
            Err(_) => {
                cost = cost.saturating_add(structured((outer.content.end - at) / 2));
                break;
            }
        }
    }
    cost
}

/// Upper bound of the heap memory one decoded certificate holds (`der`: its encoding), by
/// the same formula as a session's peer certificate: for the chain a live server session
/// keeps beside it, which the session's DER does not carry.
pub fn certificate_cost(der: &[u8]) -> usize {
    STRUCTURED_BASE
        .saturating_add(PER_BYTE.saturating_mul(der.len()))
        .saturating_add(PER_ELEMENT.saturating_mul(elements(der, 0..der.len())))
}

/// Whether a constructed field's content starts with a constructed element.
fn holds_structure(der: &[u8], content: Range<usize>) -> bool {
    matches!(read(der, content.start, content.end), Ok(t) if t.constructed)
}

/// The elements in `der[range]`, which must parse entirely: the TLVs there, those inside
/// constructed ones, and those inside OCTET STRINGs and BIT STRINGs that hold DER
/// ([`encapsulated`]). If it does not parse, one element per two bytes of it, the most any
/// encoding can hold.
pub fn elements(der: &[u8], range: Range<usize>) -> usize {
    let len = range.len();
    strict(der, range, 0).unwrap_or(len / 2)
}

/// How deep OCTET STRINGs holding DER may nest before their content counts as the worst.
const MAX_ENCAPSULATION: usize = 8;

/// The elements in `der[range]`, or why it does not parse.
fn strict(der: &[u8], range: Range<usize>, depth: usize) -> Result<usize, Malformed> {
    let mut count = 0usize;
    let mut todo = vec![range];
    while let Some(range) = todo.pop() {
        let mut at = range.start;
        while at < range.end {
            let t = read(der, at, range.end)?;
            count = count.saturating_add(1);
            if t.constructed {
                todo.push(t.content.clone());
            } else if t.tag == TAG_OCTET_STRING || t.tag == TAG_BIT_STRING {
                // A BIT STRING's content starts with its count of unused bits.
                let skip = usize::from(t.tag == TAG_BIT_STRING);
                let inner = (t.content.start + skip).min(t.content.end)..t.content.end;
                count = count.saturating_add(encapsulated(der, inner, depth + 1));
            }
            at = t.end;
        }
    }
    Ok(count)
}

/// The elements in the content of an OCTET STRING or BIT STRING (an extension's value, a
/// key), which OpenSSL may decode as DER: those of the items it starts with that parse
/// entirely, since a decoder reads one item and ignores what follows. Opaque bytes (a hash,
/// a signature, filler) count nothing, bytes from a BER indefinite length on count one
/// element per two.
fn encapsulated(der: &[u8], range: Range<usize>, depth: usize) -> usize {
    if depth > MAX_ENCAPSULATION {
        return range.len() / 2;
    }
    let mut count = 0usize;
    let mut at = range.start;
    while at < range.end {
        let item = read(der, at, range.end).and_then(|t| Ok((strict(der, at..t.end, depth)?, t)));
        match item {
            Ok((n, t)) => {
                count = count.saturating_add(n);
                at = t.end;
            }
            Err(Malformed::Indefinite) => return count.saturating_add((range.end - at) / 2),
            Err(Malformed::Opaque) => return count,
        }
    }
    count
}

const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;

/// One TLV: its first identifier octet, its content and where it ends.
struct Tlv {
    tag: u8,
    constructed: bool,
    content: Range<usize>,
    end: usize,
}

/// Why bytes are not a TLV.
enum Malformed {
    /// BER's indefinite length: a decoder reads it, we do not measure it.
    Indefinite,
    /// Not a TLV at all.
    Opaque,
}

/// Reads the TLV at `der[at..end]`.
fn read(der: &[u8], at: usize, end: usize) -> Result<Tlv, Malformed> {
    let end = end.min(der.len());
    let byte = |i: usize| {
        if i < end {
            Ok(der[i])
        } else {
            Err(Malformed::Opaque)
        }
    };
    let tag = byte(at)?;
    if tag == 0 {
        // End-of-contents (or zero padding): no element.
        return Err(Malformed::Opaque);
    }
    let mut i = at + 1;
    if tag & 0x1f == 0x1f {
        // High tag number: base-128 octets, the last without bit 8.
        let mut n = 0;
        loop {
            let b = byte(i)?;
            i += 1;
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
            if n == 4 {
                return Err(Malformed::Opaque);
            }
        }
    }
    let first = byte(i)?;
    i += 1;
    let len = if first < 0x80 {
        usize::from(first)
    } else if first == 0x80 {
        return Err(if tag & 0x20 != 0 {
            Malformed::Indefinite
        } else {
            Malformed::Opaque
        });
    } else {
        let n = usize::from(first & 0x7f);
        if n > 8 {
            return Err(Malformed::Opaque);
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = v << 8 | u64::from(byte(i)?);
            i += 1;
        }
        usize::try_from(v).map_err(|_| Malformed::Opaque)?
    };
    let content_end = i.checked_add(len).filter(|&e| e <= end);
    let content_end = content_end.ok_or(Malformed::Opaque)?;
    Ok(Tlv {
        tag,
        constructed: tag & 0x20 != 0,
        content: i..content_end,
        end: content_end,
    })
}

#[cfg(test)]
pub(crate) mod tests;
