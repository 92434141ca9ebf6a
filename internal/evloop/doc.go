// Package evloop is the event-loop core the front doors share on Linux:
// one goroutine per core owns raw non-blocking sockets in its own
// edge-triggered epoll set, the way HAProxy and nginx serve, and a front
// door (L4's relay, L7's HTTP exchange) plugs into it as a Handler.
//
// The core owns what every such loop needs and nothing of a protocol: the
// epoll set and its wake-up descriptor, the registration of sockets tagged
// with a generation (so that an event for a descriptor closed and reused
// since is dropped), the loop's clock and its sleep bounded by the
// handler's next timer, the accepts off a shared listening socket with a
// backoff when the system runs out of descriptors, the stop, abort and
// retire requests of other goroutines, and the raw system calls. The
// timeout queues (Timer, Queue, Queues) are the handlers' timers: they
// cost no allocation to arm, and the loop sleeps until the soonest is due.
//
// Elsewhere than on Linux only the timers build; the front doors serve
// every connection from its own goroutine there.
package evloop
