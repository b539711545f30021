// Free-running clock for the co-simulation, generated inside the model (it needs
// the --timing option). No top-level input then toggles each cycle, so the
// simulator never re-evaluates the input-dependent logic on a clock edge.
module systole_clock #(parameter int HALF_PERIOD_PS = 2000) (output logic clk);
    initial clk = 1'b0;
    always #(HALF_PERIOD_PS * 1ps) clk = ~clk;
endmodule
