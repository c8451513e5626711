// Reference server for benchmarks: the stack the original NestJS backend stands on
// (Node.js, Socket.IO v4, @socket.io/redis-adapter, PostgreSQL), implementing the same
// sendMessage -> store with a per-conversation seq -> newMessage path as Chatty, on
// Chatty's schema, with Chatty's tokens. Only what the load tool drives is implemented.
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import pg from 'pg';
import jwt from 'jsonwebtoken';

// PORT/HOST, or CHATTY_ADDR (host:port) as deploy/local/cluster.sh --server reference sets it.
const [addrHost, addrPort] = (process.env.CHATTY_ADDR ?? '').split(/:(?=\d+$)/);
const port = Number(process.env.PORT ?? addrPort ?? 3000);
const host = process.env.HOST ?? (addrHost || '127.0.0.1');
const secret = process.env.JWT_SECRET;
if (!secret) {
  console.error('reference: JWT_SECRET is not set');
  process.exit(2);
}
const prefix = process.env.CHATTY_REDIS_PREFIX ?? 'chatty:';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const pub = createClient({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

// One statement, as in Chatty: the conversation row lock orders seqs; membership is checked
// in the same statement.
const INSERT = `
with conv as (
  update conversations set last_seq = last_seq + 1, last_message_at = now()
   where conversation_id = $1
     and exists (select 1 from conversation_participants where conversation_id = $1 and user_id = $2)
  returning last_seq
)
insert into messages (conversation_id, sender_id, seq, content, client_msg_id)
select $1, $2, conv.last_seq, $3, $4 from conv
returning message_id, conversation_id, sender_id, seq, content, client_msg_id, is_edited, created_at, updated_at`;

let io;
const server = http.createServer((req, res) => {
  if (req.url === '/healthz' || req.url === '/readyz') {
    res.setHeader('content-type', 'application/json');
    res.end('{"status":"ok"}');
  } else if (req.url === '/metrics') {
    res.setHeader('content-type', 'text/plain');
    const cpu = process.cpuUsage();
    // The series chatty-load reads, named as Chatty exports them.
    res.end(
      `process_resident_memory_bytes ${process.memoryUsage().rss}\n` +
        `process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}\n` +
        `chatty_socket_connections{namespace="/"} ${io.of('/').sockets.size}\n`,
    );
  } else {
    res.statusCode = 404;
    res.end();
  }
});

io = new Server(server, { adapter: createAdapter(pub, sub, { key: `${prefix}socket.io` }) });

io.use((socket, next) => {
  try {
    const claims = jwt.verify(socket.handshake.auth?.token ?? '', secret, { algorithms: ['HS256'] });
    socket.data.userId = claims.sub;
    next();
  } catch {
    next(new Error('authentication token required'));
  }
});

io.on('connection', (socket) => {
  socket.join(`user:${socket.data.userId}`);
  socket.on('sendMessage', async (payload, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    try {
      const conversationId = payload?.conversation_id;
      const content = typeof payload?.content === 'string' ? payload.content.trim() : '';
      if (!conversationId || !content) {
        reply({ ok: false, error: { statusCode: 400, message: 'content and conversation_id are required' } });
        return;
      }
      const { rows } = await pool.query(INSERT, [conversationId, socket.data.userId, content, payload.client_msg_id ?? null]);
      if (rows.length === 0) {
        reply({ ok: false, error: { statusCode: 404, message: 'conversation not found' } });
        return;
      }
      const message = { ...rows[0], seq: Number(rows[0].seq), status: 'sent' };
      const { rows: members } = await pool.query(
        'select user_id from conversation_participants where conversation_id = $1',
        [conversationId],
      );
      io.to(members.map((m) => `user:${m.user_id}`)).emit('newMessage', message);
      reply({ ok: true, data: message });
    } catch (e) {
      reply({ ok: false, error: { statusCode: 500, message: String(e.message ?? e) } });
    }
  });
});

server.listen(port, host, () => console.log(`reference listening on ${host}:${port}`));
const stop = () => {
  io.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
