// The chapter's chat server (node-chat.js beside it) over TLS: the same code, with
// tls.createServer and its 'secureConnection' event in place of net.createServer and
// 'connection'. Arguments: PORT (0 picks a free one), CERT.pem, KEY.pem. The bound port is
// printed so the benchmark can find it.
var tls = require('tls');
var fs = require('fs');

var server = tls.createServer({
    cert: fs.readFileSync(process.argv[3]),
    key: fs.readFileSync(process.argv[4])
});

var sockets = [];

server.on('secureConnection', function (socket) {
    sockets.push(socket);

    socket.on('data', function (data) {
        sockets.forEach(function (otherSocket) {
            if (socket !== otherSocket) {
                otherSocket.write(data);
            }
        });
    });

    socket.on('error', function () {});

    socket.on('close', function () {
        var index = sockets.indexOf(socket);
        sockets.splice(index, 1);
    });
});

// A client that fails its handshake is no chat client: without this handler it would be
// reported on the server's 'error' and nothing else happens either way.
server.on('tlsClientError', function () {});

server.on('error', function (err) {
    console.log('Server error: ', err.message);
});

server.listen(Number(process.argv[2] || 4001), '127.0.0.1', function () {
    console.log('listening on 127.0.0.1:' + server.address().port);
});
