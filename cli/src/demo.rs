//! `msrp demo`: chunks over a real loopback TCP connection.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use msrp_core::header::{ByteRange, FromPath, HeaderName, MessageId, ToPath};
use msrp_core::{Chunk, ContinuationFlag, Decoded, Decoder, DecoderLimits, IdGenerator, Method, Uri};
use rand_core::TryRngCore;

const FILE_SIZE: u64 = 256 * 1024 * 1024;
const CHUNK_SIZE: usize = 64 * 1024;
const CHAT: [&str; 3] = ["Hello world!", "Are you there, Bob?", "Here comes a file."];

/// The file's byte at `position`: a pattern the receiver can check without storing the file.
fn file_byte(position: u64) -> u8 {
    (position.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[derive(Default)]
struct Received {
    messages: usize,
    text: Vec<String>,
    file_bytes: u64,
    file_intact: bool,
    responses_sent: usize,
    errors: Vec<String>,
}

pub(crate) fn run() -> ExitCode {
    match exchange() {
        Ok(ok) if ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("msrp demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn exchange() -> std::io::Result<bool> {
    let mut seed = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut seed).map_err(std::io::Error::other)?;
    let mut ids = IdGenerator::from_seed(seed);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let receiver_uri = Uri::new("127.0.0.1").with_port(port).with_random_session_id(&mut ids);
    let sender_uri = Uri::new("127.0.0.1").with_port(0).with_random_session_id(&mut ids);
    println!("receiver listening, path {receiver_uri}");

    let own_uri = receiver_uri.clone();
    let receiver = thread::spawn(move || -> std::io::Result<Received> {
        let (stream, peer) = listener.accept()?;
        println!("receiver accepted a connection from {peer}");
        receive(stream, &own_uri)
    });

    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let responses = {
        let reader = stream.try_clone()?;
        thread::spawn(move || count_responses(reader))
    };
    let mut sent = 0usize;
    for text in CHAT {
        let message_id = ids.message_id();
        let chunk = send_chunk(
            &mut ids,
            &receiver_uri,
            &sender_uri,
            &message_id,
            Bytes::from(text),
            (1, text.len() as u64),
            true,
        );
        write_chunk(&mut stream, &chunk)?;
        sent += 1;
    }
    let file_id = ids.message_id();
    let mut position = 0u64;
    while position < FILE_SIZE {
        let len = CHUNK_SIZE.min((FILE_SIZE - position) as usize);
        let data: Vec<u8> = (position..position + len as u64).map(file_byte).collect();
        let last = position + len as u64 == FILE_SIZE;
        let mut chunk =
            send_chunk(&mut ids, &receiver_uri, &sender_uri, &file_id, data.into(), (position + 1, FILE_SIZE), last);
        chunk.headers.set(HeaderName::ContentType, "application/octet-stream");
        write_chunk(&mut stream, &chunk)?;
        sent += 1;
        position += len as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let received = receiver.join().map_err(|_| std::io::Error::other("receiver thread panicked"))??;
    let responses = responses.join().map_err(|_| std::io::Error::other("response reader panicked"))??;
    let elapsed = started.elapsed();

    for text in &received.text {
        println!("receiver got text/plain: {text:?}");
    }
    for error in &received.errors {
        println!("receiver error: {error}");
    }
    let mib = received.file_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "sent {sent} chunks ({} messages); received {} messages, {mib:.0} MiB of file, file {}; {} responses sent, {responses} 200 OK received",
        CHAT.len() + 1,
        received.messages,
        if received.file_intact { "intact" } else { "CORRUPT" },
        received.responses_sent,
    );
    println!("{:.2} s, {:.0} MiB/s over 127.0.0.1", elapsed.as_secs_f64(), mib / elapsed.as_secs_f64());
    let ok = received.errors.is_empty()
        && received.file_intact
        && received.file_bytes == FILE_SIZE
        && received.messages == CHAT.len() + 1
        && responses == sent;
    println!("{}", if ok { "demo OK: everything delivered intact" } else { "demo FAILED" });
    Ok(ok)
}

fn send_chunk(
    ids: &mut IdGenerator,
    to: &Uri,
    from: &Uri,
    message_id: &str,
    data: Bytes,
    range: (u64, u64),
    last: bool,
) -> Chunk {
    let (start, total) = range;
    let mut chunk = Chunk::request(ids.transaction_id(), Method::Send);
    chunk.add_header(&ToPath(vec![to.clone()]));
    chunk.add_header(&FromPath(vec![from.clone()]));
    chunk.add_header(&MessageId(message_id.to_owned()));
    // Chunks over 2048 bytes are interruptible: range-end `*` (RFC 4975 §5.1).
    let end = (data.len() <= 2048).then(|| start + data.len() as u64 - 1);
    chunk.add_header(&ByteRange::new(start, end, Some(total)));
    chunk.headers.set(HeaderName::ContentType, "text/plain");
    chunk.data = data;
    chunk.contflag = if last { ContinuationFlag::End } else { ContinuationFlag::More };
    chunk
}

fn write_chunk(stream: &mut TcpStream, chunk: &Chunk) -> std::io::Result<()> {
    for part in chunk.encode_parts() {
        stream.write_all(&part)?;
    }
    Ok(())
}

fn receive(mut stream: TcpStream, own_uri: &Uri) -> std::io::Result<Received> {
    let mut decoder = Decoder::new(DecoderLimits::default());
    let mut buffer = BytesMut::with_capacity(256 * 1024);
    let mut received = Received { file_intact: true, ..Received::default() };
    let mut current: Option<(Chunk, Vec<u8>, u64)> = None;
    loop {
        buffer.reserve(256 * 1024);
        buffer.resize(buffer.capacity(), 0);
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        decoder.feed(buffer.split_to(read).freeze());
        buffer.clear();
        while let Some(item) = decoder.poll() {
            match item {
                Ok(Decoded::Head(head)) => {
                    let offset = head.byte_range().map_or(0, |range| range.start - 1);
                    current = Some((head, Vec::new(), offset));
                }
                Ok(Decoded::Data(data)) => {
                    let Some((head, text, offset)) = current.as_mut() else {
                        continue;
                    };
                    if head.content_type() == Some("text/plain") {
                        text.extend_from_slice(&data);
                    } else {
                        received.file_intact &= data.iter().zip(*offset..).all(|(&b, pos)| b == file_byte(pos));
                        received.file_bytes += data.len() as u64;
                    }
                    *offset += data.len() as u64;
                }
                Ok(Decoded::End(flag)) => {
                    let Some((head, text, _)) = current.take() else {
                        continue;
                    };
                    if flag == ContinuationFlag::End {
                        received.messages += 1;
                        if !text.is_empty() {
                            received.text.push(String::from_utf8_lossy(&text).into_owned());
                        }
                    }
                    let mut response = Chunk::response(head.transaction_id.clone(), 200, Some("OK".into()));
                    match head.from_path() {
                        Ok(FromPath(from)) => response.add_header(&ToPath(from.into_iter().take(1).collect())),
                        Err(error) => received.errors.push(error.to_string()),
                    }
                    response.add_header(&FromPath(vec![own_uri.clone()]));
                    stream.write_all(&response.encode())?;
                    received.responses_sent += 1;
                }
                Err(error) => received.errors.push(error.to_string()),
            }
        }
    }
    if let Some(error) = decoder.finish() {
        received.errors.push(error.to_string());
    }
    Ok(received)
}

/// Reads the receiver's responses and counts the 200s.
fn count_responses(mut stream: TcpStream) -> std::io::Result<usize> {
    let mut decoder = Decoder::new(DecoderLimits::default());
    let mut buffer = vec![0u8; 64 * 1024];
    let mut ok = 0;
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(ok);
        }
        decoder.feed(Bytes::copy_from_slice(&buffer[..read]));
        while let Some(item) = decoder.poll() {
            if let Ok(Decoded::Head(head)) = item {
                ok += usize::from(head.code() == Some(200));
            }
        }
    }
}
