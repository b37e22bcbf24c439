//! The receiving end of the HTTP tunnel (`/peergos/http/1`): one API
//! request per stream from another server, answered by this server's own
//! router with the sender as a [`RemotePeer`] extension, so it is never
//! forwarded again.

use std::sync::Arc;

use futures::StreamExt;
use peergos_ipld::cbor;
use peergos_p2p::{frame, PeerId};

use crate::peers::{
    decode_frame, RemotePeer, TunnelRequest, TunnelResponse, HTTP_PROTOCOL, TUNNEL_FRAME,
};
use crate::{Error, Result, Server};

/// Serves the tunnel on `server`'s node, if it has one. The task holds
/// the server weakly and stops when it is dropped.
pub(crate) fn spawn(server: &Arc<Server>) -> Result<()> {
    let Some(node) = server.node() else {
        return Ok(());
    };
    let mut tunnel = node.accept(HTTP_PROTOCOL).map_err(|source| Error::P2p {
        context: "serving the HTTP tunnel",
        source,
    })?;
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        while let Some((peer, stream)) = tunnel.next().await {
            let Some(server) = weak.upgrade() else { return };
            tokio::spawn(async move {
                if let Err(e) = serve_tunnel(server, peer, stream).await {
                    tracing::debug!(%peer, error = %e, "tunnel request failed");
                }
            });
        }
    });
    Ok(())
}

async fn serve_tunnel(
    server: Arc<Server>,
    peer: PeerId,
    mut stream: peergos_p2p::Stream,
) -> std::result::Result<(), peergos_p2p::Error> {
    use tower::ServiceExt;
    frame::accept(&mut stream).await?;
    let bytes = frame::read(&mut stream, TUNNEL_FRAME).await?;
    let response = match decode_frame::<TunnelRequest>(&bytes, TUNNEL_FRAME) {
        Ok(request) => answer_tunnel(server, peer, request).await,
        Err(e) => TunnelResponse {
            status: 400,
            content_type: None,
            body: format!("malformed tunnel request: {e}").into_bytes(),
        },
    };
    return match cbor::to_vec(&response) {
        Ok(bytes) => frame::write_last(&mut stream, &bytes).await,
        Err(_) => Ok(()),
    };

    async fn answer_tunnel(
        server: Arc<Server>,
        peer: PeerId,
        request: TunnelRequest,
    ) -> TunnelResponse {
        let fail = |status: u16, message: String| TunnelResponse {
            status,
            content_type: None,
            body: message.into_bytes(),
        };
        let mut builder = axum::http::Request::builder()
            .method(request.method.as_str())
            .uri(request.path.as_str())
            .extension(RemotePeer(peer));
        if let Some(kind) = &request.content_type {
            builder = builder.header(axum::http::header::CONTENT_TYPE, kind.as_str());
        }
        builder = builder.header(axum::http::header::CONTENT_LENGTH, request.body.len());
        let http = match builder.body(axum::body::Body::from(request.body)) {
            Ok(http) => http,
            Err(e) => return fail(400, format!("malformed tunnel request: {e}")),
        };
        let response = match super::router(server).oneshot(http).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match axum::body::to_bytes(response.into_body(), TUNNEL_FRAME).await {
            Ok(body) => TunnelResponse {
                status,
                content_type,
                body: body.to_vec(),
            },
            Err(e) => fail(500, format!("reading the answer: {e}")),
        }
    }
}
