package api

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// MaxBatchCommands is the most commands one /api/batch request may carry.
const MaxBatchCommands = 10000

// batchWorkers is how many commands of a parallel batch run at once.
const batchWorkers = 32

type batchRequest struct {
	Commands []batchCommand `json:"commands"`
	// Parallel lets commands run concurrently. Publications to one channel
	// still run in the order given; nothing else is ordered.
	Parallel bool `json:"parallel"`
}

type batchCommand struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// batchReply is one command's outcome: a result or an error, never both.
type batchReply struct {
	Result any             `json:"result,omitempty"`
	Error  *protocol.Error `json:"error,omitempty"`
}

// batch runs several API calls in one request and answers each in the
// order given. A failed command does not stop the others; the request as a
// whole fails only when it cannot be read.
func (a *API) batch(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req batchRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if len(req.Commands) == 0 {
		return nil, protocol.ErrBadRequest.WithMessage(`"commands" must list at least one command`)
	}
	if len(req.Commands) > MaxBatchCommands {
		return nil, protocol.ErrLimitExceeded.WithMessage("a batch holds at most %d commands, got %d", MaxBatchCommands, len(req.Commands))
	}
	replies := make([]batchReply, len(req.Commands))
	run := func(i int) {
		c := req.Commands[i]
		m, ok := a.methods[c.Method]
		if !ok {
			replies[i].Error = protocol.ErrUnknownCommand.WithMessage("no API method %q", c.Method)
			return
		}
		params := []byte(c.Params)
		if len(params) == 0 {
			params = []byte("{}")
		}
		res, perr := m(ctx, params)
		if perr != nil {
			replies[i].Error = perr
			return
		}
		replies[i].Result = res
	}
	if !req.Parallel {
		for i := range req.Commands {
			run(i)
		}
		return map[string]any{"replies": replies}, nil
	}
	// Each group runs its commands in order; groups run concurrently. A
	// publication joins the group of its channel so that one channel's
	// publications keep the order they were given in.
	groups := groupByChannel(req.Commands)
	work := make(chan []int)
	var wg sync.WaitGroup
	for range min(batchWorkers, len(groups)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				for _, i := range g {
					run(i)
				}
			}
		}()
	}
	for _, g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()
	return map[string]any{"replies": replies}, nil
}

// groupByChannel splits a batch into groups of command indexes: one group
// per channel that publications go to, in the order given, and one group of
// its own for every other command.
func groupByChannel(cmds []batchCommand) [][]int {
	var groups [][]int
	byChannel := map[string]int{}
	for i, c := range cmds {
		if c.Method == "publish" {
			var p struct {
				Channel string `json:"channel"`
			}
			if json.Unmarshal(c.Params, &p) == nil {
				if g, ok := byChannel[p.Channel]; ok {
					groups[g] = append(groups[g], i)
					continue
				}
				byChannel[p.Channel] = len(groups)
			}
		}
		groups = append(groups, []int{i})
	}
	return groups
}
