//! Another server's public room directory, for `/publicRooms?server=...`.

use ruma::{
    ServerName, UInt,
    api::federation::directory::get_public_rooms_filtered,
    directory::{Filter, RoomNetwork},
};

use crate::{
    error::{Error, Result},
    rooms::PublicRoomsPage,
    services::Services,
};

pub async fn public_rooms(
    services: &Services,
    server: &ServerName,
    search: Option<&str>,
    limit: Option<UInt>,
    since: Option<&str>,
) -> Result<PublicRoomsPage> {
    let mut request = get_public_rooms_filtered::v1::Request::new();
    request.limit = limit;
    request.since = since.map(str::to_owned);
    let mut filter = Filter::new();
    filter.generic_search_term = search.map(str::to_owned);
    request.filter = filter;
    request.room_network = RoomNetwork::Matrix;
    let response = services
        .federation
        .client
        .send(server, request)
        .await
        .map_err(|e| Error::Federation(format!("the room directory of {server}: {e}")))?;
    Ok(PublicRoomsPage {
        total: response
            .total_room_count_estimate
            .unwrap_or_else(|| UInt::new_saturating(response.chunk.len() as u64)),
        chunk: response.chunk,
        next_batch: response.next_batch,
        prev_batch: response.prev_batch,
    })
}
