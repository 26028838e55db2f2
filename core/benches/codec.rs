//! Decoder and encoder throughput.
//!
//! `cargo bench -p msrp-core --bench codec`
//!
//! - `decode/body/<size>`: one SEND with a body of that size, fed in 64 KiB reads
//!   (what a socket read hands over), drained with `Decoder::poll`; throughput in bytes.
//! - `decode/small_send`: a batch of typical chat SENDs in one buffer; throughput in chunks.
//! - `encode/contiguous/<size>`: `Chunk::encode` into one buffer; throughput in bytes.
//! - `encode/parts/<size>` and `encode/small_send`: `Chunk::encode_parts` (head, shared body,
//!   end-line: what a vectored write sends); chunks per second.
//! - `baseline/memmem/<size>`: `memchr::memmem` alone over the same bytes: the ceiling
//!   the body scan is measured against.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use msrp_core::codec::{Decoded, Decoder, DecoderLimits};
use msrp_core::header::{ByteRange, FromPath, HeaderName, MessageId, ToPath};
use msrp_core::{Chunk, Method, Uri};

const SIZES: [(usize, &str); 4] = [(100, "100B"), (2048, "2KiB"), (64 * 1024, "64KiB"), (16 * 1024 * 1024, "16MiB")];
const READ_SIZE: usize = 64 * 1024;
const SMALL_BATCH: usize = 1000;

fn send_chunk(body: Bytes, tid: &str) -> Chunk {
    let to: Uri = "msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp".parse().expect("valid URI");
    let from: Uri = "msrp://atlanta.example.com:7654/jshA7weztas;tcp".parse().expect("valid URI");
    let mut chunk = Chunk::request(tid, Method::Send);
    chunk.add_header(&ToPath(vec![to]));
    chunk.add_header(&FromPath(vec![from]));
    chunk.add_header(&MessageId("87652491aZ".into()));
    chunk.add_header(&ByteRange::whole(body.len() as u64));
    chunk.headers.set(HeaderName::ContentType, "text/plain");
    chunk.data = body;
    chunk
}

/// A body that looks like data, with CRLFs and dashes but no end-line.
fn body_of(size: usize) -> Bytes {
    let pattern = b"The quick brown fox\r\n--- jumps over the lazy dog 0123456789\r\n";
    pattern.iter().copied().cycle().take(size).collect::<Vec<u8>>().into()
}

fn drain(decoder: &mut Decoder) -> usize {
    let mut body = 0;
    while let Some(item) = decoder.poll() {
        if let Ok(Decoded::Data(data)) = item {
            body += data.len();
        }
    }
    body
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, label) in SIZES {
        let wire = send_chunk(body_of(size), "a786hjs2").encode();
        let reads: Vec<Bytes> =
            (0..wire.len()).step_by(READ_SIZE).map(|i| wire.slice(i..wire.len().min(i + READ_SIZE))).collect();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("body", label), &reads, |b, reads| {
            b.iter(|| {
                let mut decoder = Decoder::new(DecoderLimits::default());
                let mut body = 0;
                for read in reads {
                    decoder.feed(read.clone());
                    body += drain(&mut decoder);
                }
                assert_eq!(body, size);
            });
        });
    }
    let mut batch = Vec::new();
    for i in 0..SMALL_BATCH {
        batch.extend_from_slice(
            &send_chunk(Bytes::from_static(b"Hey Bob, are you there?"), &format!("tx{i:08}")).encode(),
        );
    }
    let batch = Bytes::from(batch);
    group.throughput(Throughput::Elements(SMALL_BATCH as u64));
    group.bench_function("small_send", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(DecoderLimits::default());
            decoder.feed(batch.clone());
            let mut chunks = 0;
            while let Some(item) = decoder.poll() {
                if let Ok(Decoded::Head(head)) = item {
                    black_box(&head);
                    chunks += 1;
                }
            }
            assert_eq!(chunks, SMALL_BATCH);
        });
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, label) in SIZES {
        let chunk = send_chunk(body_of(size), "a786hjs2");
        // One contiguous buffer: the body is copied once.
        group.throughput(Throughput::Bytes(chunk.encode().len() as u64));
        group.bench_with_input(BenchmarkId::new("contiguous", label), &chunk, |b, chunk| {
            b.iter(|| black_box(chunk.encode()));
        });
        // Head, shared body, end-line: what a vectored write sends; the body is not copied.
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("parts", label), &chunk, |b, chunk| {
            b.iter(|| black_box(chunk.encode_parts()));
        });
    }
    let chunk = send_chunk(Bytes::from_static(b"Hey Bob, are you there?"), "a786hjs2");
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_send", |b| b.iter(|| black_box(chunk.encode_parts())));
    group.finish();
}

fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline");
    for (size, label) in SIZES {
        let body = body_of(size);
        let finder = memchr::memmem::Finder::new(b"\r\n-------a786hjs2");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("memmem", label), &body, |b, body| {
            b.iter(|| black_box(finder.find(body)));
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, baseline);
criterion_main!(benches);
