// A small HTTP service: its port, version and greeting come from config.json, which ferry
// renders per host. SIGTERM stops taking connections and exits once the requests in flight end.
const fs = require('fs');
const http = require('http');

const config = JSON.parse(fs.readFileSync('config.json', 'utf8'));
const answer = `${config.version} ${config.greeting}\n`;

const server = http.createServer((req, res) => {
  const slow = /[?&]ms=(\d+)/.exec(req.url);
  setTimeout(() => res.end(answer), slow ? Number(slow[1]) : 0);
});
server.keepAliveTimeout = 1000;

server.listen(config.port, '127.0.0.1', () => {
  fs.mkdirSync('run', { recursive: true });
  fs.writeFileSync('run/app.pid', `${process.pid}\n`);
  console.log(`listening on 127.0.0.1:${config.port}`);
});

process.on('SIGTERM', () => {
  console.log('SIGTERM: finishing the requests in flight');
  server.close(() => {
    console.log('stopped');
    process.exit(0);
  });
  server.closeIdleConnections();
});
