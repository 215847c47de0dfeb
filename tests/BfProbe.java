// What Bio-Formats reads from image files, as JSON on standard output; used by
// tests/_bioformats.py. Usage: java -cp bioformats_package.jar:DIR BfProbe PIXEL_DIR FILE...
// PIXEL_DIR "-" skips the pixels; otherwise series s of file f is written as raw bytes
// (planes in T, C, Z order) to PIXEL_DIR/f_s.raw. The OME-XML that Bio-Formats reads is
// also validated against the 2016-06 schema shipped inside the jar (no network).

import java.io.ByteArrayInputStream;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import javax.xml.XMLConstants;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import loci.common.DebugTools;
import loci.common.services.ServiceFactory;
import loci.formats.FormatTools;
import loci.formats.ImageReader;
import loci.formats.meta.IMetadata;
import loci.formats.services.OMEXMLService;
import loci.formats.tiff.TiffParser;
import ome.units.quantity.Length;
import ome.units.quantity.Time;
import ome.xml.model.primitives.Color;
import org.xml.sax.ErrorHandler;
import org.xml.sax.SAXParseException;

public class BfProbe {
  private final StringBuilder out = new StringBuilder();

  public static void main(String[] args) throws Exception {
    DebugTools.setRootLevel("OFF");
    BfProbe probe = new BfProbe();
    probe.run(args[0], java.util.Arrays.copyOfRange(args, 1, args.length));
    PrintStream stdout = new PrintStream(System.out, true, "UTF-8");
    stdout.println(probe.out);
  }

  void run(String pixelDir, String[] files) throws Exception {
    OMEXMLService service = new ServiceFactory().getInstance(OMEXMLService.class);
    Schema schema = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI)
        .newSchema(BfProbe.class.getResource("/released-schema/2016-06/ome.xsd"));
    out.append('[');
    for (int f = 0; f < files.length; f++) {
      if (f > 0) out.append(',');
      IMetadata meta = service.createOMEXMLMetadata();
      ImageReader reader = new ImageReader();
      reader.setMetadataStore(meta);
      reader.setId(files[f]);
      out.append("{\"file\":").append(str(files[f]));
      out.append(",\"format\":").append(str(reader.getFormat()));
      out.append(",\"used_files\":[");
      String[] used = reader.getUsedFiles();
      for (int i = 0; i < used.length; i++) out.append(i > 0 ? "," : "").append(str(used[i]));
      out.append("],\"xml_errors\":").append(validate(schema, files[f]));
      out.append(",\"series\":[");
      for (int s = 0; s < reader.getSeriesCount(); s++) {
        if (s > 0) out.append(',');
        reader.setSeries(s);
        series(reader, meta, s);
        if (!pixelDir.equals("-")) pixels(reader, pixelDir + "/" + f + "_" + s + ".raw");
      }
      out.append("],\"plates\":[");
      for (int p = 0; p < meta.getPlateCount(); p++) {
        if (p > 0) out.append(',');
        plate(meta, p);
      }
      out.append("]}");
      reader.close();
    }
    out.append(']');
  }

  void series(ImageReader reader, IMetadata meta, int s) {
    out.append("{\"name\":").append(str(meta.getImageName(s)));
    out.append(",\"size_x\":").append(reader.getSizeX());
    out.append(",\"size_y\":").append(reader.getSizeY());
    out.append(",\"size_z\":").append(reader.getSizeZ());
    out.append(",\"size_c\":").append(reader.getSizeC());
    out.append(",\"size_t\":").append(reader.getSizeT());
    out.append(",\"dimension_order\":").append(str(reader.getDimensionOrder()));
    out.append(",\"pixel_type\":").append(str(FormatTools.getPixelTypeString(reader.getPixelType())));
    out.append(",\"little_endian\":").append(reader.isLittleEndian());
    out.append(",\"physical_size_x\":").append(length(meta.getPixelsPhysicalSizeX(s)));
    out.append(",\"physical_size_y\":").append(length(meta.getPixelsPhysicalSizeY(s)));
    out.append(",\"physical_size_z\":").append(length(meta.getPixelsPhysicalSizeZ(s)));
    out.append(",\"time_increment\":").append(time(meta.getPixelsTimeIncrement(s)));
    String label = null;
    Length[] stage = {null, null, null};
    try {
      label = meta.getStageLabelName(s);
      stage = new Length[] {meta.getStageLabelX(s), meta.getStageLabelY(s), meta.getStageLabelZ(s)};
    } catch (RuntimeException e) {
      // no StageLabel on this image
    }
    out.append(",\"stage_label\":").append(str(label));
    out.append(",\"stage_position\":[").append(length(stage[0])).append(',');
    out.append(length(stage[1])).append(',').append(length(stage[2])).append(']');
    out.append(",\"channels\":[");
    for (int c = 0; c < meta.getChannelCount(s); c++) {
      Color color = meta.getChannelColor(s, c);
      out.append(c > 0 ? "," : "").append("{\"name\":").append(str(meta.getChannelName(s, c)));
      out.append(",\"color\":").append(color == null ? "null" : String.valueOf(color.getValue()));
      out.append('}');
    }
    out.append("],\"planes\":[");
    for (int p = 0; p < meta.getPlaneCount(s); p++) {
      out.append(p > 0 ? "," : "").append("{\"z\":").append(meta.getPlaneTheZ(s, p).getValue());
      out.append(",\"c\":").append(meta.getPlaneTheC(s, p).getValue());
      out.append(",\"t\":").append(meta.getPlaneTheT(s, p).getValue());
      out.append(",\"delta_t\":").append(time(meta.getPlaneDeltaT(s, p)));
      out.append(",\"exposure_time\":").append(time(meta.getPlaneExposureTime(s, p)));
      out.append(",\"position_x\":").append(length(meta.getPlanePositionX(s, p)));
      out.append(",\"position_y\":").append(length(meta.getPlanePositionY(s, p)));
      out.append(",\"position_z\":").append(length(meta.getPlanePositionZ(s, p)));
      out.append('}');
    }
    out.append("]}");
  }

  void plate(IMetadata meta, int p) {
    out.append("{\"name\":").append(str(meta.getPlateName(p)));
    out.append(",\"rows\":").append(meta.getPlateRows(p) == null ? "null" : meta.getPlateRows(p).getValue());
    out.append(",\"columns\":");
    out.append(meta.getPlateColumns(p) == null ? "null" : meta.getPlateColumns(p).getValue());
    out.append(",\"wells\":[");
    for (int w = 0; w < meta.getWellCount(p); w++) {
      out.append(w > 0 ? "," : "").append("{\"row\":").append(meta.getWellRow(p, w).getValue());
      out.append(",\"column\":").append(meta.getWellColumn(p, w).getValue());
      out.append(",\"images\":[");
      for (int s = 0; s < meta.getWellSampleCount(p, w); s++) {
        out.append(s > 0 ? "," : "").append(str(meta.getWellSampleImageRef(p, w, s)));
      }
      out.append("]}");
    }
    out.append("]}");
  }

  static void pixels(ImageReader reader, String path) throws Exception {
    try (FileOutputStream raw = new FileOutputStream(path)) {
      for (int t = 0; t < reader.getSizeT(); t++) {
        for (int c = 0; c < reader.getSizeC(); c++) {
          for (int z = 0; z < reader.getSizeZ(); z++) {
            raw.write(reader.openBytes(reader.getIndex(z, c, t)));
          }
        }
      }
    }
  }

  /** The schema errors of the file's own OME-XML (the TIFF comment, or the file). */
  static String validate(Schema schema, String file) throws Exception {
    String xml;
    if (file.endsWith(".tif") || file.endsWith(".tiff")) {
      xml = new TiffParser(file).getComment();
    } else {
      xml = new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(file)),
          StandardCharsets.UTF_8);
    }
    List<String> errors = new ArrayList<>();
    Validator validator = schema.newValidator();
    validator.setErrorHandler(new ErrorHandler() {
      public void warning(SAXParseException e) {}
      public void error(SAXParseException e) { errors.add(e.getMessage()); }
      public void fatalError(SAXParseException e) { errors.add(e.getMessage()); }
    });
    try {
      validator.validate(new StreamSource(new StringReader(xml == null ? "" : xml)));
    } catch (org.xml.sax.SAXException e) {
      if (errors.isEmpty()) errors.add(e.getMessage());
    }
    StringBuilder json = new StringBuilder("[");
    for (int i = 0; i < errors.size(); i++) json.append(i > 0 ? "," : "").append(str(errors.get(i)));
    return json.append(']').toString();
  }

  static String length(Length value) {
    if (value == null) return "null";
    return "[" + value.value().doubleValue() + "," + str(value.unit().getSymbol()) + "]";
  }

  static String time(Time value) {
    if (value == null) return "null";
    return "[" + value.value().doubleValue() + "," + str(value.unit().getSymbol()) + "]";
  }

  static String str(String value) {
    if (value == null) return "null";
    StringBuilder json = new StringBuilder("\"");
    for (char ch : value.toCharArray()) {
      if (ch == '"' || ch == '\\') json.append('\\').append(ch);
      else if (ch < 0x20 || ch > 0x7e) json.append(String.format("\\u%04x", (int) ch));
      else json.append(ch);
    }
    return json.append('"').toString();
  }
}
