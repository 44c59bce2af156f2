//! Properties of the codec: every message survives encoding and arrives
//! whole however the bytes are split; any bytes at all give a message or
//! an error, never a panic.

use bytes::BytesMut;
use ch04_network::protocol::{
    self, ApiKey, FetchPartition, FetchRequest, ProduceInPlace, ProducePartition, ProduceRequest,
    ProduceTopic, RequestHeader,
};
use proptest::prelude::*;

fn produce_request() -> impl Strategy<Value = ProduceRequest> {
    let partition = (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(partition, batch)| ProducePartition { partition, batch });
    let topic = ("[a-z._-]{1,20}", proptest::collection::vec(partition, 0..4))
        .prop_map(|(name, partitions)| ProduceTopic { name, partitions });
    (
        prop_oneof![Just(0i8), Just(1i8)],
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(|(acks, topics)| ProduceRequest { acks, topics })
}

fn fetch_request() -> impl Strategy<Value = FetchRequest> {
    let partition = ("[a-z]{1,10}", any::<u32>(), any::<i64>(), any::<u32>()).prop_map(
        |(topic, partition, offset, max_bytes)| FetchPartition {
            topic,
            partition,
            offset,
            max_bytes,
        },
    );
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(partition, 0..5),
    )
        .prop_map(
            |(max_wait_ms, min_bytes, max_bytes, partitions)| FetchRequest {
                max_wait_ms,
                min_bytes,
                max_bytes,
                partitions,
            },
        )
}

/// Feeds `bytes` to the frame decoder in pieces cut at `cuts`, and returns
/// the frames it yields.
fn frames_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<BytesMut> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for to in points {
        buf.extend_from_slice(&bytes[from..to]);
        from = to;
        while let Some(frame) = protocol::take_frame(&mut buf, protocol::DEFAULT_MAX_FRAME).unwrap()
        {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty());
    frames
}

proptest! {
    #[test]
    fn produce_requests_round_trip_in_any_pieces(
        request in produce_request(),
        id in any::<u32>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let header = RequestHeader { api_key: ApiKey::Produce as u16, api_version: 0, correlation_id: id };
        let mut bytes = BytesMut::new();
        protocol::encode_request(header, &request, &mut bytes).unwrap();
        // Two requests back to back, split anywhere.
        let mut twice = bytes.to_vec();
        twice.extend_from_slice(&bytes);
        let frames = frames_in_pieces(&twice, &cuts);
        prop_assert_eq!(frames.len(), 2);
        for frame in frames {
            let (parsed, body) = protocol::parse_request(frame).unwrap();
            prop_assert_eq!(parsed, header);
            prop_assert_eq!(protocol::decode_body::<ProduceRequest>(&body).unwrap(), request.clone());
        }
    }

    #[test]
    fn a_frame_in_pieces_is_the_same_frame_with_its_batches_spliced(
        request in produce_request(),
        copy in any::<bool>(),
    ) {
        let header = RequestHeader { api_key: ApiKey::Produce as u16, api_version: 0, correlation_id: 9 };
        let mut whole = BytesMut::new();
        protocol::encode_request(header, &request, &mut whole).unwrap();
        let batches: Vec<&[u8]> = request.topics.iter().flat_map(|t| &t.partitions).map(|p| p.batch.as_slice()).collect();
        // Equal bytes elsewhere in memory are not the batches: copied, not spliced.
        let copies: Vec<Vec<u8>> = batches.iter().map(|b| b.to_vec()).collect();
        let others: Vec<&[u8]> = copies.iter().map(Vec::as_slice).collect();
        let large = if copy { &others } else { &batches };
        let pieces = protocol::encode_request_in_pieces(header, &request, large).unwrap();
        let joined: Vec<u8> = pieces.slices().iter().flat_map(|s| s.iter().copied()).collect();
        prop_assert_eq!(&joined[..], &whole[..]);
        let expected = if copy { 0 } else { batches.iter().filter(|b| !b.is_empty()).count() };
        prop_assert_eq!(pieces.spliced(), expected);
    }

    #[test]
    fn produce_requests_decode_in_place_to_the_same_batches(request in produce_request()) {
        let header = RequestHeader { api_key: ApiKey::Produce as u16, api_version: 0, correlation_id: 1 };
        let mut bytes = BytesMut::new();
        protocol::encode_request(header, &request, &mut bytes).unwrap();
        let frame = protocol::take_frame(&mut bytes, u32::MAX).unwrap().unwrap();
        let (_, body) = protocol::parse_request(frame).unwrap();
        let in_place = ProduceInPlace::decode(&body).unwrap();
        prop_assert_eq!(in_place.acks, request.acks);
        prop_assert_eq!(in_place.topics.len(), request.topics.len());
        for ((name, batches), topic) in in_place.topics.iter().zip(&request.topics) {
            prop_assert_eq!(name, &topic.name);
            prop_assert_eq!(batches.len(), topic.partitions.len());
            for ((partition, range), p) in batches.iter().zip(&topic.partitions) {
                prop_assert_eq!(*partition, p.partition);
                prop_assert_eq!(&body[range.clone()], &p.batch[..]);
            }
        }
    }

    #[test]
    fn fetch_responses_round_trip(request in fetch_request(), id in any::<u32>()) {
        let mut bytes = BytesMut::new();
        protocol::encode_response(id, &request, &mut bytes).unwrap();
        let frame = protocol::take_frame(&mut bytes, u32::MAX).unwrap().unwrap();
        let (got, body) = protocol::parse_response(frame.freeze()).unwrap();
        prop_assert_eq!(got, id);
        prop_assert_eq!(protocol::decode_body::<FetchRequest>(&body).unwrap(), request);
    }

    #[test]
    fn any_bytes_are_a_frame_an_error_or_a_wait(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(frame)) = protocol::take_frame(&mut buf, 1024)
            && let Ok((_, body)) = protocol::parse_request(frame)
        {
            // Whatever decodes or not, it does not panic.
            let _ = protocol::decode_body::<ProduceRequest>(&body);
            let _ = protocol::decode_body::<FetchRequest>(&body);
            // A range it returns is inside the body.
            if let Ok(request) = ProduceInPlace::decode(&body) {
                for (_, batches) in request.topics {
                    for (_, range) in batches {
                        prop_assert!(range.end <= body.len());
                    }
                }
            }
        }
    }
}
