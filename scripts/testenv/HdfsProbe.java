// Readiness probe used by scripts/testenv/start-hdfs.sh (one JVM instead of
// three FsShell runs): writes a small file to HDFS, reads it back, deletes it.
//
//   java -cp CLASSES:HADOOP_CLASSPATH HdfsProbe hdfs://127.0.0.1:PORT SECONDS
//
// Retries every 0.3 s for up to SECONDS; exits 0 once a round trip worked,
// 1 otherwise (printing the last error).
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

public class HdfsProbe {
  public static void main(String[] args) throws Exception {
    URI uri = URI.create(args[0]);
    long deadline = System.nanoTime() + (long) (Double.parseDouble(args[1]) * 1e9);
    Configuration conf = new Configuration();
    conf.setInt("ipc.client.connect.max.retries", 0);
    conf.setInt("ipc.client.connect.max.retries.on.timeouts", 0);
    byte[] data = "sluice testenv probe\n".getBytes(StandardCharsets.UTF_8);
    Path path = new Path("/.sluice-testenv-probe");
    Exception last = null;
    do {
      try (FileSystem fs = FileSystem.newInstance(uri, conf)) {
        try (OutputStream out = fs.create(path, true)) {
          out.write(data);
        }
        ByteArrayOutputStream back = new ByteArrayOutputStream();
        try (InputStream in = fs.open(path)) {
          in.transferTo(back);
        }
        fs.delete(path, false);
        if (Arrays.equals(back.toByteArray(), data)) {
          System.exit(0);
        }
        last = new Exception("read back " + back.size() + " bytes that differ from what was written");
      } catch (Exception e) {
        last = e;
      }
      Thread.sleep(300);
    } while (System.nanoTime() < deadline);
    System.err.println("HdfsProbe: " + last);
    System.exit(1);
  }
}
