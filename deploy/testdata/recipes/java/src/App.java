import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import java.util.concurrent.Executors;

/** A small HTTP service: its port, version and greeting come from conf/app.properties. */
public class App {
    public static void main(String[] args) throws IOException {
        Properties conf = new Properties();
        try (var in = Files.newBufferedReader(Path.of("conf/app.properties"))) {
            conf.load(in);
        }
        int port = Integer.parseInt(conf.getProperty("port").trim());
        String answer = conf.getProperty("version") + " " + conf.getProperty("greeting") + "\n";
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 128);
        server.setExecutor(Executors.newCachedThreadPool());
        server.createContext("/", exchange -> {
            String query = exchange.getRequestURI().getQuery();
            if (query != null && query.startsWith("ms=")) { // a slow request, to see it finish during a stop
                try {
                    Thread.sleep(Long.parseLong(query.substring(3)));
                } catch (InterruptedException | NumberFormatException e) {
                    // answer at once
                }
            }
            byte[] body = answer.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        // SIGTERM: stop taking connections, let the requests in flight finish (at most 2 s).
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("SIGTERM: finishing the requests in flight");
            server.stop(2);
            System.out.println("stopped");
        }));
        Files.createDirectories(Path.of("run"));
        Files.writeString(Path.of("run/app.pid"), ProcessHandle.current().pid() + "\n");
        System.out.println("listening on 127.0.0.1:" + port);
    }
}
