"""Generic JSON/REST upstreams: a pass-through connector and an echo/items simulator."""
