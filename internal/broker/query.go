package broker

import "slices"

// SelectHistory answers q for a channel whose stream is at pos, so that
// every backend applies HistoryQuery the same way. It checks q.Since's
// epoch against pos first: another epoch fails with ErrEpochMismatch and a
// result that still carries pos. A query that asks for no publications
// (Limit 0) is answered with pos only. Otherwise read returns the
// publications the channel's history keeps, in offset order; after is
// q.Since.Offset (0 without Since), which read may use to skip older ones
// but need not. SelectHistory then drops those at or before after, orders
// them as q asks and applies q.Limit. It may reorder the slice read
// returned and returns part of it. An error from read is returned as is,
// with an empty result.
func SelectHistory(pos Position, q HistoryQuery, read func(after uint64) ([]Publication, error)) (HistoryResult, error) {
	res := HistoryResult{Position: pos}
	if q.Since != nil && q.Since.Epoch != pos.Epoch {
		return res, ErrEpochMismatch
	}
	if q.Limit == 0 {
		return res, nil
	}
	var after uint64
	if q.Since != nil {
		after = q.Since.Offset
	}
	pubs, err := read(after)
	if err != nil {
		return HistoryResult{}, err
	}
	i := 0
	for i < len(pubs) && pubs[i].Offset <= after {
		i++
	}
	pubs = pubs[i:]
	if q.Reverse {
		slices.Reverse(pubs)
	}
	if q.Limit > 0 && len(pubs) > q.Limit {
		pubs = pubs[:q.Limit]
	}
	res.Publications = pubs
	return res, nil
}

// CountPresence returns the PresenceStats of a channel whose presence is
// list: the number of entries, and of distinct non-empty user ids among
// them. list holds one entry per client, as PresenceStore.Presence
// returns it.
func CountPresence(list []ClientInfo) PresenceStats {
	users := make(map[string]struct{}, len(list))
	for _, info := range list {
		if info.User != "" {
			users[info.User] = struct{}{}
		}
	}
	return PresenceStats{Clients: len(list), Users: len(users)}
}
