// One-beat read/write port onto the shared-file memory (systole_mem.cpp).
// Read: rd_data/rd_err valid the cycle after rd_en. Write: applied at the clock
// edge where wr_en is high; wr_err is registered the same way.
module systole_mem_port #(parameter int BYTES = 16) (
    input  logic                 clk,
    input  logic                 rd_en,
    input  logic [63:0]          rd_addr,
    output logic [8*BYTES-1:0]   rd_data,
    output logic                 rd_err,
    input  logic                 wr_en,
    input  logic [63:0]          wr_addr,
    input  logic [8*BYTES-1:0]   wr_data,
    input  logic [BYTES-1:0]     wr_strb,
    output logic                 wr_err
);
    import "DPI-C" function int systole_mem_read32(input longint unsigned addr,
                                                   output int unsigned data);
    import "DPI-C" function int systole_mem_write32(input longint unsigned addr,
                                                    input int unsigned data,
                                                    input int unsigned strb);
    always_ff @(posedge clk) begin
        if (rd_en) begin
            automatic logic err = 1'b0;
            for (int i = 0; i < BYTES / 4; i++) begin
                automatic int unsigned value;
                err |= systole_mem_read32(rd_addr + 64'(4 * i), value) != 0;
                rd_data[32*i +: 32] <= value;
            end
            rd_err <= err;
        end
        if (wr_en) begin
            automatic logic err = 1'b0;
            for (int i = 0; i < BYTES / 4; i++)
                err |= systole_mem_write32(wr_addr + 64'(4 * i), wr_data[32*i +: 32],
                                           32'(wr_strb[4*i +: 4])) != 0;
            wr_err <= err;
        end
    end
endmodule
