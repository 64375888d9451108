// The chapter's chat server (chatServer.js, "last step"), as the chapter writes it, minus
// its per-message console.log (which would measure the terminal, not the server), plus
// the socket 'error' handler that the chapter's own error-handling section asks for:
// without it, one client resetting while a line is forwarded to it kills the process
// (seen in the churn scenario), and nothing after that measures anything.
// The port comes from the first argument (0 picks a free one); the bound port is printed
// so the benchmark can find it.
var net = require('net');

var server = net.createServer();

var sockets = [];

server.on('connection', function (socket) {
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

server.on('error', function (err) {
    console.log('Server error: ', err.message);
});

server.on('close', function () {
    console.log('Server closed');
});

server.listen(Number(process.argv[2] || 4001), '127.0.0.1', function () {
    console.log('listening on 127.0.0.1:' + server.address().port);
});
