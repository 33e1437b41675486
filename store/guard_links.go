package store

import "context"

func (g *Guard) ListLinks(ctx context.Context, f LinkFilter) ([]LinkView, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	v, err := g.inner.ListLinks(ctx, f)
	return v, g.Observe(ctx, err)
}
