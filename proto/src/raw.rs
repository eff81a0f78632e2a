//! Streaming reports that are already encoded: the agent keeps its
//! unacknowledged reports as bytes (a third of their decoded size) and
//! resends them without encoding them again; the ingest benchmark sends
//! reports built from pre-encoded parts. On the wire it is the same
//! `tally.v1.Ingest/Stream` call as the generated client's.
use std::marker::PhantomData;

use bytes::{BufMut as _, Bytes};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Sends `Bytes` holding encoded messages as they are; decodes answers
/// with prost.
#[derive(Debug, Clone, Copy)]
pub struct PreEncodedCodec<D>(PhantomData<D>);

impl<D> Default for PreEncodedCodec<D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[derive(Debug)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug)]
pub struct ProstDecoder<D>(PhantomData<D>);

impl<D: prost::Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode the collector's answer: {e}")))
    }
}

impl<D: prost::Message + Default + Send + 'static> Codec for PreEncodedCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder(PhantomData)
    }
}

/// Opens `Ingest/Stream` sending pre-encoded `NodeReport`s over `channel`
/// (a `Channel`, or one wrapped by an interceptor that adds credentials).
pub async fn ingest_stream<T, S>(
    channel: T,
    reports: S,
) -> Result<tonic::Response<tonic::Streaming<crate::v1::IngestAck>>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
    S: tonic::codegen::tokio_stream::Stream<Item = Bytes> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| {
        let e: tonic::codegen::StdError = e.into();
        Status::unavailable(format!("collector not ready: {e}"))
    })?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tally.v1.Ingest/Stream");
    let mut request = tonic::Request::new(reports);
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new("tally.v1.Ingest", "Stream"));
    grpc.streaming(
        request,
        path,
        PreEncodedCodec::<crate::v1::IngestAck>::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use crate::v1::{NodeIdentity, NodeReport, ProcessWindow};

    /// Reports may be assembled from parts encoded separately: protobuf
    /// fields may come in any order and repeated ones concatenate.
    #[test]
    fn concatenated_parts_decode_as_one_report() {
        let head = NodeReport {
            node: Some(NodeIdentity {
                node_name: "n".into(),
                ..Default::default()
            }),
            sequence: 7,
            ..Default::default()
        };
        let procs = NodeReport {
            processes: vec![ProcessWindow::default(); 3],
            ..Default::default()
        };
        let mut bytes = procs.encode_to_vec();
        bytes.extend(head.encode_to_vec());
        let r = NodeReport::decode(&bytes[..]).unwrap();
        assert_eq!(r.sequence, 7);
        assert_eq!(r.processes.len(), 3);
    }
}
