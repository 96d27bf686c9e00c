//! The little XML S3 answers with that the client reads: a `ListObjectsV2` page and the code
//! and message of an error document. Flat documents of known tags, read by finding the tags;
//! anything else in them is ignored.

use crate::{ListPage, ListedObject};

/// The text of the first `<tag>…</tag>` in `xml`, still escaped.
pub(crate) fn first<'x>(xml: &'x str, tag: &str) -> Option<&'x str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// Every `<tag>…</tag>` in `xml`, in order.
fn all<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let body = &rest[at + open.len()..];
        let Some(len) = body.find(&close) else { break };
        found.push(&body[..len]);
        rest = &body[len + close.len()..];
    }
    found
}

/// Resolves the five predefined entities and numeric character references.
pub(crate) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let entity = &after[..end];
        let resolved = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match resolved {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A `ListBucketResult` page.
pub(crate) fn parse_list(xml: &str) -> Result<ListPage, String> {
    if !xml.contains("<ListBucketResult") {
        return Err("no ListBucketResult element".to_owned());
    }
    let mut objects = Vec::new();
    for contents in all(xml, "Contents") {
        let key = first(contents, "Key").ok_or("an object without a Key")?;
        let key = unescape(key);
        let size = first(contents, "Size")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("object {key:?}: no Size"))?;
        let last_modified = first(contents, "LastModified")
            .and_then(parse_time)
            .ok_or_else(|| format!("object {key:?}: no LastModified"))?;
        objects.push(ListedObject {
            key,
            size,
            last_modified,
        });
    }
    let truncated = first(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let next = match truncated {
        false => None,
        true => Some(unescape(
            first(xml, "NextContinuationToken")
                .ok_or("a truncated listing without NextContinuationToken")?,
        )),
    };
    Ok(ListPage { objects, next })
}

/// `2026-12-06T03:04:05.000Z` (fractions ignored) in Unix seconds.
fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim().as_bytes();
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(&t[range]).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = crate::sign::days_from_civil(year, month as u32, day as u32);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/a&amp;b</Key><LastModified>2013-05-24T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>10</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/c</Key><LastModified>1970-01-01T00:01:01Z</LastModified><Size>0</Size></Contents>
<NextContinuationToken>1/a&#x2B;b</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(
            page.objects,
            [
                ListedObject {
                    key: "p/a&b".into(),
                    size: 10,
                    last_modified: 1_369_353_600
                },
                ListedObject {
                    key: "p/c".into(),
                    size: 0,
                    last_modified: 61
                },
            ]
        );
        assert_eq!(page.next.as_deref(), Some("1/a+b"));
        let last = xml.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_list(&last).unwrap().next, None);
    }

    #[test]
    fn broken_listings_are_refused_naming_the_problem() {
        assert!(
            parse_list("<Error/>")
                .unwrap_err()
                .contains("ListBucketResult")
        );
        let no_size = "<ListBucketResult><Contents><Key>k</Key><LastModified>2013-05-24T00:00:00Z</LastModified></Contents></ListBucketResult>";
        assert!(parse_list(no_size).unwrap_err().contains("\"k\": no Size"));
        let truncated = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(
            parse_list(truncated)
                .unwrap_err()
                .contains("NextContinuationToken")
        );
        assert_eq!(unescape("a &bogus; &#65; &"), "a &bogus; A &");
    }
}
