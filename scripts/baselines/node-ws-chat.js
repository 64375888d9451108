// The chapter's chat server as a browser would reach it: Node with the `ws` package
// (pinned in package.json beside this file), broadcasting each text message to every
// other client, as node-chat.js does with each chunk of bytes. Arguments: PORT (0 picks a
// free one), and for wss, CERT.pem and KEY.pem (then it serves https and wss). The bound
// port is printed so the benchmark can find it.
var fs = require('fs');
var http = require('http');
var https = require('https');
var WebSocketServer = require('ws').WebSocketServer;

var server = process.argv[3]
    ? https.createServer({
        cert: fs.readFileSync(process.argv[3]),
        key: fs.readFileSync(process.argv[4])
    })
    : http.createServer();

// Any path upgrades: tcpchat's page uses /ws, and the benchmark asks for it here too.
var wss = new WebSocketServer({ server: server });

wss.on('connection', function (socket) {
    socket.on('message', function (data, isBinary) {
        wss.clients.forEach(function (other) {
            if (other !== socket && other.readyState === 1) {
                other.send(data, { binary: isBinary });
            }
        });
    });

    // Without it, one client resetting while a message is forwarded to it kills the
    // process (as the chapter's error-handling section says for node-chat.js).
    socket.on('error', function () {});
});

server.on('tlsClientError', function () {});

server.on('error', function (err) {
    console.log('Server error: ', err.message);
});

server.listen(Number(process.argv[2] || 8080), '127.0.0.1', function () {
    console.log('listening on 127.0.0.1:' + server.address().port);
});
