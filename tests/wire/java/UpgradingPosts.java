import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/**
 * POSTs through the JDK's own HttpClient with its default settings, which on a cleartext
 * URL offer HTTP/2: each request goes out with "Connection: Upgrade, HTTP2-Settings" and
 * "Upgrade: h2c", its body written after the head.
 *
 * Usage: java UpgradingPosts URL COUNT
 *
 * Sends COUNT POSTs to URL one after the other on one client, the n-th with the body
 * {"n":n}, and prints one line per answer: "<status> <HTTP version> <body>".
 */
public final class UpgradingPosts {
    public static void main(String[] args) throws Exception {
        URI uri = URI.create(args[0]);
        int count = Integer.parseInt(args[1]);
        HttpClient client = HttpClient.newHttpClient();
        for (int n = 1; n <= count; n++) {
            HttpRequest request = HttpRequest.newBuilder(uri)
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"n\":" + n + "}"))
                    .build();
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println(response.statusCode() + " " + response.version() + " " + response.body());
        }
    }
}
