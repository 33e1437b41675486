package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

// listChunk is how many files ListLinks reads per round of pipelined
// calls.
const listChunk = 500

// ListLinks lists links for the admin's view. Redis has no secondary
// index by sender, recipient or date, so this walks every file through
// the files:by-expiry index, listChunk files at a time (three pipelined
// round trips per chunk: files and their link sets, then links and
// messages), filters in Go and keeps only the Limit smallest link IDs.
// Its cost is O(files stored) Redis reads per call, memory O(Limit +
// listChunk): an admin tool, not something to poll. It is not one
// snapshot: a link created or deleted during the walk may or may not be
// listed.
func (s *Store) ListLinks(ctx context.Context, f store.LinkFilter) ([]store.LinkView, error) {
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []store.LinkView
	for start := int64(0); ; start += listChunk {
		ids, views, err := s.listChunk(ctx, start)
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		for _, v := range views {
			if f.Matches(v) {
				out = append(out, v)
			}
		}
		if len(out) > f.Limit {
			slices.SortFunc(out, byLinkID)
			out = out[:f.Limit]
		}
		if len(ids) < listChunk {
			break
		}
	}
	slices.SortFunc(out, byLinkID)
	return out, nil
}

// listChunk reads one chunk of the files:by-expiry index with its links,
// each chunk bounded by the store's timeout.
func (s *Store) listChunk(ctx context.Context, start int64) ([]string, []store.LinkView, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ids, err := s.client.ZRange(ctx, s.byExpiry, start, start+listChunk-1).Result()
	if err != nil {
		return nil, nil, err
	}
	views, err := s.linkViewsOfFiles(ctx, ids)
	return ids, views, err
}

func byLinkID(a, b store.LinkView) int { return strings.Compare(a.Link.ID, b.Link.ID) }

// linkViewsOfFiles reads the files named, their links and messages. Files
// whose metadata is gone (deleted meanwhile, or dropped by TTL) are
// skipped.
func (s *Store) linkViewsOfFiles(ctx context.Context, fileIDs []string) ([]store.LinkView, error) {
	if len(fileIDs) == 0 {
		return nil, nil
	}
	fileCmds := make([]*redis.MapStringStringCmd, len(fileIDs))
	setCmds := make([]*redis.StringSliceCmd, len(fileIDs))
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range fileIDs {
			fileCmds[i] = p.HGetAll(ctx, s.prefix+"file:"+id)
			setCmds[i] = p.SMembers(ctx, s.prefix+"file:"+id+":links")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	type fileLinks struct {
		file  store.File
		links []string
	}
	var files []fileLinks
	msgIDs := map[string]bool{}
	for i := range fileIDs {
		fields := fileCmds[i].Val()
		if len(fields) == 0 {
			continue
		}
		file, err := parseFile(fields)
		if err != nil {
			return nil, err
		}
		files = append(files, fileLinks{file: file, links: setCmds[i].Val()})
		msgIDs[file.MessageID] = true
	}
	linkCmds := map[string]*redis.MapStringStringCmd{}
	msgCmds := map[string]*redis.MapStringStringCmd{}
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, fl := range files {
			for _, id := range fl.links {
				linkCmds[id] = p.HGetAll(ctx, s.linkKey(id))
			}
		}
		for id := range msgIDs {
			msgCmds[id] = p.HGetAll(ctx, s.messageKey(id))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	messages := map[string]store.Message{}
	for id, cmd := range msgCmds {
		if fields := cmd.Val(); len(fields) > 0 {
			m, err := parseMessage(fields)
			if err != nil {
				return nil, err
			}
			messages[id] = m
		}
	}
	var views []store.LinkView
	for _, fl := range files {
		m, ok := messages[fl.file.MessageID]
		if !ok {
			continue
		}
		for _, id := range fl.links {
			fields := linkCmds[id].Val()
			if len(fields) == 0 {
				continue
			}
			l, err := parseLink(fields)
			if err != nil {
				return nil, err
			}
			views = append(views, store.LinkView{Link: l, File: fl.file, Message: m})
		}
	}
	return views, nil
}
