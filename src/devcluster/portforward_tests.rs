//! Tests of the port-forward bridge (see portforward.rs).
use futures::SinkExt;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::super::channel::frame;
use super::super::channel::test_support::{
    LIMIT, Socket, joined, next_message, send_binary, socket_pair,
};
use super::*;

fn request(ports: Vec<(u16, Backend)>) -> PortForwardRequest {
    PortForwardRequest {
        namespace: "shop".to_owned(),
        pod: "web-0".to_owned(),
        uid: "uid-1".to_owned(),
        ports,
    }
}

async fn start(req: PortForwardRequest) -> (Socket, JoinHandle<()>) {
    let (server, client) = socket_pair().await;
    let task = tokio::spawn(serve(server, req, CancellationToken::new()));
    (client, task)
}

/// Every binary frame until the stream ends, and the close code.
async fn receive_all(client: &mut Socket) -> (Vec<Vec<u8>>, Option<CloseCode>) {
    let (mut frames, mut close) = (Vec::new(), None);
    while let Some(message) = next_message(client).await {
        match message {
            Message::Binary(bytes) => frames.push(bytes.to_vec()),
            Message::Close(frame) => close = frame.map(|frame| frame.code),
            _ => {}
        }
    }
    (frames, close)
}

/// The concatenated payloads of the frames on `channel`.
fn payload(frames: &[Vec<u8>], channel: u8) -> Vec<u8> {
    frames
        .iter()
        .filter(|frame| frame.first() == Some(&channel))
        .flat_map(|frame| frame.iter().skip(1).copied())
        .collect()
}

#[tokio::test]
async fn initial_frames_then_refused_error_then_normal_close() {
    let (mut client, task) = start(request(vec![(5432, Backend::Unavailable)])).await;
    let (frames, close) = receive_all(&mut client).await;
    let error = "error forwarding port 5432 to pod shop/web-0, uid uid-1: failed to connect to \
                 localhost:5432 inside namespace \"shop/web-0\": dial tcp 127.0.0.1:5432: connect: \
                 connection refused";
    assert_eq!(
        frames,
        vec![
            vec![0, 0x38, 0x15],
            vec![1, 0x38, 0x15],
            frame(1, error.as_bytes())
        ]
    );
    assert_eq!(close, Some(CloseCode::Normal));
    joined(task).await;
}

#[tokio::test]
async fn every_port_gets_both_initial_frames_first() {
    // An error on port 0 must not overtake port 1's initial frames.
    let ports = vec![
        (80, Backend::Unavailable),
        (443, Backend::Unavailable),
        (65535, Backend::Echo),
    ];
    let (mut client, task) = start(request(ports)).await;
    let mut initial = Vec::new();
    for _ in 0..6 {
        match next_message(&mut client).await {
            Some(Message::Binary(bytes)) => initial.push(bytes.to_vec()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected = [
        [0, 80, 0],
        [1, 80, 0],
        [2, 0xbb, 1],
        [3, 0xbb, 1],
        [4, 255, 255],
        [5, 255, 255],
    ];
    assert_eq!(initial, expected.map(Vec::from));
    drop(client);
    joined(task).await;
}

#[tokio::test]
async fn echo_returns_a_mebibyte_byte_exact() {
    let (client, task) = start(request(vec![(7, Backend::Echo)])).await;
    let mut sent = vec![0u8; 1024 * 1024];
    rand::rng().fill_bytes(&mut sent);
    let (mut sink, mut stream) = client.split();
    let data = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(50_000) {
            sink.send(Message::binary(frame(0, chunk))).await.unwrap();
        }
        sink
    });
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(LIMIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Binary(bytes) = message else {
            continue;
        };
        assert!(bytes.len() <= channel::MAX_DATA_FRAME + 1);
        match bytes.split_first() {
            Some((0, data)) if data.len() == 2 && received.is_empty() => {} // initial frame
            Some((0, data)) => received.extend_from_slice(data),
            Some((1, data)) => assert_eq!(data, 7u16.to_le_bytes()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == sent, "echoed bytes differ");
    let sink = tokio::time::timeout(LIMIT, writer).await.unwrap().unwrap();
    let mut client = sink.reunite(stream).unwrap();
    tokio::time::timeout(LIMIT, client.close(None))
        .await
        .unwrap()
        .unwrap();
    while next_message(&mut client).await.is_some() {}
    joined(task).await;
}

#[tokio::test]
async fn http_backend_answers_and_finishes() {
    let backend = Backend::Http {
        namespace: "shop".to_owned(),
        pod: "web-0".to_owned(),
    };
    let (mut client, task) = start(request(vec![(8080, backend)])).await;
    send_binary(&mut client, b"\x00GET / HTTP/1.1\r\nHost: localhost\r\n").await;
    send_binary(&mut client, b"\x00\r\n").await;
    let (frames, close) = receive_all(&mut client).await;
    let response = payload(frames.get(2..).unwrap(), 0);
    assert_eq!(
        String::from_utf8(response).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\n\
         Connection: close\r\n\r\nhello from shop/web-0 port 8080\n"
    );
    assert_eq!(close, Some(CloseCode::Normal));
    joined(task).await;
}

#[tokio::test]
async fn address_backend_splices_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4];
        socket.read_exact(&mut request).await.unwrap();
        assert_eq!(&request, b"ping");
        socket.write_all(b"pong").await.unwrap();
    });
    let (mut client, task) = start(request(vec![(9000, Backend::Address(address))])).await;
    send_binary(&mut client, b"\x00ping").await;
    let (frames, close) = receive_all(&mut client).await;
    assert_eq!(payload(frames.get(2..).unwrap(), 0), b"pong");
    assert_eq!(payload(frames.get(2..).unwrap(), 1), b"");
    assert_eq!(close, Some(CloseCode::Normal));
    joined(task).await;
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn refused_and_non_loopback_addresses_are_reported() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let remote: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let ports = vec![(1, Backend::Address(closed)), (2, Backend::Address(remote))];
    let (mut client, task) = start(request(ports)).await;
    let (frames, close) = receive_all(&mut client).await;
    let refused = String::from_utf8(payload(frames.get(4..).unwrap(), 1)).unwrap();
    assert_eq!(
        refused,
        format!(
            "error forwarding port 1 to pod shop/web-0, uid uid-1: failed to connect to localhost:1 \
             inside namespace \"shop/web-0\": dial tcp {closed}: connect: connection refused"
        )
    );
    let remote_error = String::from_utf8(payload(frames.get(4..).unwrap(), 3)).unwrap();
    assert_eq!(
        remote_error,
        "error forwarding port 2 to pod shop/web-0, uid uid-1: the devcluster only forwards to \
         loopback addresses, not 192.0.2.1:80"
    );
    assert_eq!(close, Some(CloseCode::Normal));
    joined(task).await;
}

#[tokio::test]
async fn client_close_drops_the_backends() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (mut client, task) = start(request(vec![(9000, Backend::Address(address))])).await;
    let (mut socket, _) = tokio::time::timeout(LIMIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(LIMIT, client.close(None))
        .await
        .unwrap()
        .unwrap();
    while next_message(&mut client).await.is_some() {}
    joined(task).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(LIMIT, socket.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(read.unwrap(), 0, "the backend connection was closed");
}
